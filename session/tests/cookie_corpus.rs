//! Cookie decoding against a corpus of damaged values: whatever a client sends, opening it is
//! "no session" (never a panic), and only untouched values open. The same function is the target
//! of the `cookie` fuzzer in `fuzz/` (cargo fuzz), which explores beyond this fixed corpus.

use session::{Keyring, SessionHandle, UserId};

const SECRET: &str = "corpus-secret-corpus-secret-corpus-secret";

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }
}

fn sealed() -> (Keyring, String, SessionHandle) {
    let keyring = Keyring::from_secrets(SECRET).expect("secret");
    let handle = SessionHandle::new(UserId::random(), None);
    let value = keyring.seal("sid", &handle.encode());
    (keyring, value, handle)
}

#[test]
fn an_untouched_value_opens() {
    let (keyring, value, handle) = sealed();
    let (opened, rotated) = SessionHandle::open(&keyring, "sid", &value).expect("opens");
    assert_eq!(opened, handle);
    assert!(!rotated);
}

#[test]
fn every_damaged_value_is_refused_without_panicking() {
    let (keyring, value, _) = sealed();
    let bytes = value.as_bytes();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut refused = 0;
    for round in 0..20_000 {
        let mut damaged = bytes.to_vec();
        match round % 6 {
            // Flip one bit.
            0 => {
                let at = rng.below(damaged.len());
                damaged[at] ^= 1 << rng.below(8);
            }
            // Truncate.
            1 => damaged.truncate(rng.below(damaged.len())),
            // Extend with junk.
            2 => damaged.extend((0..=rng.below(64)).map(|_| (rng.next() & 0xff) as u8)),
            // Replace a byte with any byte, including non-ASCII.
            3 => {
                let at = rng.below(damaged.len());
                let byte = (rng.next() & 0xff) as u8;
                if damaged[at] == byte {
                    continue;
                }
                damaged[at] = byte;
            }
            // Random garbage of any length up to 4 KB.
            4 => {
                damaged = (0..rng.below(4096))
                    .map(|_| (rng.next() & 0xff) as u8)
                    .collect()
            }
            // Swap two different bytes.
            _ => {
                let (a, b) = (rng.below(damaged.len()), rng.below(damaged.len()));
                if damaged[a] == damaged[b] {
                    continue;
                }
                damaged.swap(a, b);
            }
        }
        let Ok(text) = std::str::from_utf8(&damaged) else {
            // Headers that are not UTF-8 never reach the decoder as text.
            continue;
        };
        if text == value {
            continue;
        }
        assert!(
            SessionHandle::open(&keyring, "sid", text).is_none(),
            "a damaged value opened: {text:?}"
        );
        refused += 1;
    }
    assert!(refused > 10_000, "the corpus exercised {refused} values");
}

#[test]
fn values_sealed_for_another_name_or_secret_are_refused() {
    let (keyring, value, _) = sealed();
    assert!(SessionHandle::open(&keyring, "other", &value).is_none());
    let other = Keyring::from_secrets("another-secret-another-secret-another-01").expect("secret");
    assert!(SessionHandle::open(&other, "sid", &value).is_none());
    // A sealed value whose plaintext is not a handle.
    let not_a_handle = keyring.seal("sid", "2:hello");
    assert!(SessionHandle::open(&keyring, "sid", &not_a_handle).is_none());
}
