//! `[cors]`: the origins whose credentialed requests get CORS headers, and what their
//! preflights may ask.

use super::{
    super::{error::RoutesError, raw::RawCors, table::Cors},
    context::Parser,
};

impl Parser<'_> {
    pub(super) fn cors(&self, raw: &RawCors) -> Result<Cors, RoutesError> {
        let origins = raw
            .origins
            .iter()
            .map(|origin| self.read(origin, |reason| format!("cors origins: {reason}")))
            .collect::<Result<_, _>>()?;
        let mut cors = Cors {
            origins,
            ..Cors::default()
        };
        if let Some(headers) = &raw.allow_headers {
            cors.allow_headers = headers
                .iter()
                .map(|header| header.trim().to_ascii_lowercase())
                .collect();
        }
        if let Some(max_age) = &raw.max_age {
            cors.max_age = self.duration(max_age, "cors max_age")?;
        }
        Ok(cors)
    }
}
