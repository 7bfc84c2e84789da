#!/usr/bin/env bash
# Charts of one bench/run.sh run, as SVG files beside its table (gnuplot, Debian's gnuplot-nox):
#
#   bench/charts.sh bench/runs/proxies.20261207-101500.AbCd
#
# Reads metrics.txt (and raw.txt, for the range of the rounds when metrics.txt lacks it) of
# that run directory, any earlier run included, and writes there:
#   reads.svg       reads/s through our gateway, nginx, HAProxy, Caddy and directly on the
#                   reader: the median of the rounds as a bar, the min-max of the rounds as
#                   an error bar
#   cpu.svg         CPU µs per read, stacked by process (proxy, reader, Redis), per target
#   increments.svg  increments/s and lost updates through our gateway against the reference
#                   (Express + connect-redis behind nginx), or ours alone when the reference
#                   did not run (PEER=0), which the chart then says
# A figure the run did not make (a target not measured, a run stopped early) is left out of
# its chart and named in it; a chart with nothing to draw is not written, and a line on stderr
# says why. Exit status: 0 when at least one chart was written; 1 when none was, or gnuplot or
# metrics.txt is missing; 2 on a usage error.
set -euo pipefail

say() { printf 'charts.sh: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

[[ $# -eq 1 ]] || {
  sed -n '2,18p' "$0" >&2
  exit 2
}
RUN_DIR=${1%/}
[[ -d $RUN_DIR ]] || die "no such run directory: $RUN_DIR"
METRICS=$RUN_DIR/metrics.txt
RAW=$RUN_DIR/raw.txt
[[ -s $METRICS ]] || die "no metrics.txt (or an empty one) in $RUN_DIR: nothing to chart"
command -v gnuplot >/dev/null 2>&1 || die "gnuplot is missing (Debian: apt-get install -y gnuplot-nox)"
RUN_NAME=$(basename "$RUN_DIR")

declare -A M=()
while read -r k v; do [[ -n ${k:-} ]] && M[$k]=${v:-}; done <"$METRICS"

# is_num VALUE : a plain number ("n/a", empty and the like are not)
is_num() { [[ ${1:-} =~ ^-?[0-9]+([.][0-9]+)?$ ]]; }
# num NAME : the metric's value when it is a number, else nothing
num() { if is_num "${M[$1]:-}"; then echo "${M[$1]}"; fi; }
# thousands VALUE [DECIMALS] : 24563 -> 24,563 (rounded to DECIMALS, default 0)
thousands() {
  awk -v v="$1" -v d="${2:-0}" 'BEGIN {
    s = sprintf("%." d "f", v); neg = (s ~ /^-/); if (neg) s = substr(s, 2)
    i = index(s, "."); if (i) { ip = substr(s, 1, i - 1); fp = substr(s, i) } else { ip = s; fp = "" }
    while (length(ip) > 3) { fp = "," substr(ip, length(ip) - 2) fp; ip = substr(ip, 1, length(ip) - 3) }
    print (neg ? "-" : "") ip fp }'
}
# ymax VALUE... : a y-axis top with room above the largest value for its label
ymax() { printf '%s\n' "$@" | awk 'BEGIN{m=0} $1>m{m=$1} END{print (m > 0) ? m * 1.2 : 1}'; }

# What every chart shares: 800x450 SVG on white, one sans-serif font, light grid.
GATEWAY_COLOR='#d9480f' # our gateway, wherever it appears
PEER_COLOR='#6c8ebf'    # the other proxies, the reference
DIRECT_COLOR='#b8c2cc'  # no proxy at all
preamble() { # preamble OUT
  cat <<EOF
set terminal svg size 800,450 fixed enhanced font "Helvetica,13" background rgb "white"
set output "$1"
set encoding utf8
set border 3 lc rgb "#555555"
set tics nomirror textcolor rgb "#333333"
set grid ytics back lc rgb "#e4e4e4" lt 1
set key noautotitle
set style fill solid 1.0 border -1
set boxwidth 0.6
set xtics scale 0
set ytics scale 0.5
set bmargin 5.5
set format y "%.0s%c"
set title font "Helvetica,16" textcolor rgb "#222222"
EOF
}
# footnote TEXT : small grey text in the bottom left corner (not enhanced: taken literally)
footnote() {
  printf 'set label "%s" at screen 0.012, 0.03 left font "Helvetica,10" textcolor rgb "#777777" noenhanced\n' "$1"
}
SETUP="wrk -t${M[meta.threads]:-?} -c${M[meta.connections]:-?}, ${M[meta.round_duration_s]:-?} s per run, ${M[meta.rounds]:-?} round(s), ${M[meta.nproc]:-?} cores shared by all; run $RUN_NAME"

# draw NAME TITLE SCRIPT : run gnuplot on SCRIPT, writing RUN_DIR/NAME.svg (TITLE: its <title>,
# what a screen reader or a hover shows); on a gnuplot error or warning the script is kept
# beside the chart (NAME.gp) for a look
WROTE=()
draw() {
  local name=$1 title=$2 script=$3 out=$RUN_DIR/$1.svg err
  rm -f "$RUN_DIR/$name.gp"
  if ! err=$(gnuplot 2>&1 >/dev/null <<<"$script"); then
    printf '%s\n' "$script" >"$RUN_DIR/$name.gp"
    rm -f "$out"
    say "$name.svg not written: gnuplot failed (script in $RUN_DIR/$name.gp): $err"
    return 0
  fi
  if [[ -n $err ]]; then
    printf '%s\n' "$script" >"$RUN_DIR/$name.gp"
    say "$name.svg: gnuplot warned (script in $RUN_DIR/$name.gp): $err"
  fi
  # gnuplot names one font family; let viewers without Helvetica fall back to a sans-serif
  sed -i -e 's/font-family="Helvetica"/font-family="Helvetica, Arial, DejaVu Sans, sans-serif"/g' \
    -e "s|<title>Gnuplot</title>|<title>${title//|/-} ($RUN_NAME)</title>|" "$out"
  WROTE+=("$out")
}

# The read targets, in the order of run.sh's table, with the names the charts show.
READ_TARGETS=(gateway nginx haproxy caddy direct)
declare -A SHOW=([gateway]='{/:Bold our gateway}' [nginx]=nginx [haproxy]=HAProxy [caddy]=Caddy
  [direct]='direct\n(no proxy)')
declare -A PLAIN=([gateway]='our gateway' [nginx]=nginx [haproxy]=HAProxy [caddy]=Caddy [direct]=direct)
color_of() {
  case $1 in
  gateway) echo "$GATEWAY_COLOR" ;;
  direct) echo "$DIRECT_COLOR" ;;
  *) echo "$PEER_COLOR" ;;
  esac
}

# ---- 1. reads/s by proxy ----
# rounds_range TARGET : "min max" of TARGET's per-round reads/s in raw.txt (nothing if none)
rounds_range() {
  [[ -s $RAW ]] || return 0
  awk -v t="$1" '$1 ~ ("^" t "[.]read[.]round[0-9]+[.]rps$") && $2 ~ /^[0-9.]+$/ {
      if (n == 0 || $2 < lo) lo = $2; if (n == 0 || $2 > hi) hi = $2; n++ }
    END { if (n) print lo, hi }' "$RAW"
}
chart_reads() {
  local data="" labels="" missing=() tops=() i=0 t rps lo hi c one_round=1
  for t in "${READ_TARGETS[@]}"; do
    rps=$(num "$t.read.rps")
    if [[ -z $rps ]]; then
      missing+=("${PLAIN[$t]}")
      continue
    fi
    lo=$(num "$t.read.rps_min")
    hi=$(num "$t.read.rps_max")
    if [[ -z $lo || -z $hi ]]; then read -r lo hi <<<"$(rounds_range "$t")"; fi
    : "${lo:=$rps}" "${hi:=$rps}"
    [[ $lo == "$hi" ]] || one_round=0
    c=$(color_of "$t")
    data+="$i $rps $lo $hi 0x${c#\#} \"$(thousands "$rps")\""$'\n'
    labels+="\"${SHOW[$t]}\" $i, "
    tops+=("$hi")
    i=$((i + 1))
  done
  ((i > 0)) || {
    say "reads.svg not written: metrics.txt has no reads/s (TARGET.read.rps) for ${READ_TARGETS[*]}"
    return 0
  }
  local ytop sub note=""
  ytop=$(ymax "${tops[@]}")
  if ((one_round)); then
    sub="reads/s of the run's one round (no range of rounds to show)"
  else
    sub="bar: median of ${M[meta.rounds]:-the} rounds; error bar: slowest to fastest round"
  fi
  ((${#missing[@]} == 0)) || note="not measured in this run: ${missing[*]}"
  # shellcheck disable=SC2016 # a gnuplot datablock, not a shell variable
  local ebar='$d using 1:3:(0):($4-$3) with vectors heads size screen 0.012,90 lw 1.5 lc rgb "#333333", '
  ((one_round == 0)) || ebar=""
  draw reads "Session reads per second through each proxy" "$(
    preamble "$RUN_DIR/reads.svg"
    cat <<EOF
set title "Session reads (GET / with a cookie) through each proxy\n{/=11 $sub}"
set ylabel "reads per second"
set xlabel "in front of the same reader and Redis"
set xrange [-0.6:$((i - 1)).6]
set yrange [0:$ytop]
set xtics (${labels%, })
\$d << EOD
$data
EOD
$(footnote "$SETUP")
$([[ -n $note ]] && printf 'set label "%s" at graph 0.99, 0.97 right font "Helvetica,11" textcolor rgb "#aa0000"\n' "$note")
plot \$d using 1:2:5 with boxes lc rgb variable, $ebar\
     \$d using 1:4:6 with labels offset 0,0.9 font "Helvetica,12" textcolor rgb "#222222"
EOF
  )"
}

# ---- 2. CPU µs per read, stacked by process ----
chart_cpu() {
  local data="" labels="" missing=() tops=() i=0 t p r d total band=""
  for t in "${READ_TARGETS[@]}"; do
    p=$(num "cpu_us_per_req.$t.proxy")
    r=$(num "cpu_us_per_req.$t.reader")
    d=$(num "cpu_us_per_req.$t.redis")
    if [[ -z $r && -z $d && ($t == direct || -z $p) ]]; then
      missing+=("${PLAIN[$t]}")
      continue
    fi
    [[ $t == direct ]] && p=0
    : "${p:=0}" "${r:=0}" "${d:=0}"
    total=$(awk -v a="$p" -v b="$r" -v c="$d" 'BEGIN{print a + b + c}')
    # x, proxy, reader, redis, cumulative tops of each segment, total
    data+="$i $p $r $d $(awk -v a="$p" -v b="$r" -v c="$d" 'BEGIN{print a, a + b, a + b + c}')"$'\n'
    labels+="\"${SHOW[$t]}\" $i, "
    tops+=("$total")
    [[ $t == gateway ]] && band="set object 1 rect from $((i)) - 0.45, graph 0 to $((i)) + 0.45, graph 1 behind fc rgb '#fdebe2' fs solid 1.0 noborder"
    i=$((i + 1))
  done
  ((i > 0)) || {
    say "cpu.svg not written: metrics.txt has no CPU per request (cpu_us_per_req.TARGET.ROLE)"
    return 0
  }
  local ytop note=""
  ytop=$(ymax "${tops[@]}")
  ((${#missing[@]} == 0)) || note="not measured in this run: ${missing[*]}"
  # segment labels only where the segment is tall enough to hold one
  local minseg
  minseg=$(awk -v y="$ytop" 'BEGIN{print y * 0.06}')
  draw cpu "CPU time per session read, by process" "$(
    preamble "$RUN_DIR/cpu.svg"
    cat <<EOF
set title "CPU time per session read, by process\n{/=11 utime + stime of each process tree over the measured runs, divided by the reads served}"
set ylabel "CPU µs per read"
set xlabel "in front of the same reader and Redis"
set format y "%g"
set xrange [-0.6:$((i - 1)).6]
set yrange [0:$ytop]
set xtics (${labels%, })
set key outside right top vertical invert reverse Left samplen 1.5 font "Helvetica,12" textcolor rgb "#333333"
$band
\$d << EOD
$data
EOD
$(footnote "$SETUP")
$([[ -n $note ]] && printf 'set label "%s" at graph 0.99, 0.97 right font "Helvetica,11" textcolor rgb "#aa0000"\n' "$note")
seg(v) = (v >= $minseg) ? sprintf("%.1f", v) : ""
w = 0.3
plot \$d using 1:(\$5/2):(\$1-w):(\$1+w):(0):5 with boxxyerror lc rgb "#e8a23a" title "proxy", \
     \$d using 1:6:(\$1-w):(\$1+w):5:6 with boxxyerror lc rgb "#9fc89a" title "reader", \
     \$d using 1:7:(\$1-w):(\$1+w):6:7 with boxxyerror lc rgb "#7aa6c2" title "Redis", \
     \$d using 1:(\$2/2):(seg(\$2)) with labels font "Helvetica,11" textcolor rgb "#222222", \
     \$d using 1:(\$5+\$3/2):(seg(\$3)) with labels font "Helvetica,11" textcolor rgb "#222222", \
     \$d using 1:(\$6+\$4/2):(seg(\$4)) with labels font "Helvetica,11" textcolor rgb "#222222", \
     \$d using 1:7:(sprintf("{/:Bold %.1f µs}", \$7)) with labels offset 0,0.8 font "Helvetica,12" textcolor rgb "#222222"
EOF
  )"
}

# ---- 3. increments: ours against the reference ----
chart_increments() {
  local ours_rps ours_lost ours_ok ref_rps ref_lost ref_ok ref_state
  ours_rps=$(num gateway.increment.rps)
  ours_lost=$(num gateway.increment.lost_updates)
  ours_ok=$(num gateway.increment.completed_ok)
  [[ -n $ours_rps ]] || {
    say "increments.svg not written: metrics.txt has no gateway.increment.rps (the run stopped before the increments?)"
    return 0
  }
  ref_rps=$(num reference.proxy.write.rps)
  ref_lost=$(num reference.proxy.write.lost_updates)
  ref_ok=$(num reference.proxy.write.completed_ok)
  if [[ -n $ref_rps ]]; then
    ref_state=ran
  elif [[ -e $RUN_DIR/peer.out ]]; then
    ref_state="reference run failed\n(see peer.out)"
  else
    ref_state="reference not run\n(PEER=0)"
  fi
  # rows: x, increments/s, lost (shown; a negative count is 0), its label, colour, rps label
  local rows="" lost_label shown_lost x=0 name rps lost ok tops_r=() tops_l=() negative=0
  for name in ours ref; do
    if [[ $name == ours ]]; then rps=$ours_rps lost=$ours_lost ok=$ours_ok; else rps=$ref_rps lost=$ref_lost ok=$ref_ok; fi
    if [[ -n $rps ]]; then
      if [[ -n $lost ]]; then
        shown_lost=$lost
        if awk -v l="$lost" 'BEGIN{exit !(l < 0)}'; then shown_lost=0 negative=1; fi
        lost_label="$(thousands "$shown_lost")${ok:+ of $(thousands "$ok")}"
        if [[ -n $ok ]] && awk -v l="$shown_lost" -v n="$ok" 'BEGIN{exit !(l > 0 && n > 0)}'; then
          lost_label+=" ($(awk -v l="$shown_lost" -v n="$ok" 'BEGIN{printf "%.0f", 100 * l / n}') %)"
        fi
      else
        shown_lost=0 lost_label="not counted"
      fi
      rows+="$x $rps $shown_lost \"$lost_label\" 0x$([[ $name == ours ]] && echo "${GATEWAY_COLOR#\#}" || echo "${PEER_COLOR#\#}") \"$(thousands "$rps")\""$'\n'
      tops_r+=("$rps")
      tops_l+=("$shown_lost")
    fi
    x=$((x + 1))
  done
  local ytop_r ytop_l sub note=""
  ytop_r=$(ymax "${tops_r[@]}")
  ytop_l=$(ymax "${tops_l[@]}")
  awk -v y="$ytop_l" 'BEGIN{exit !(y < 10)}' && ytop_l=10 # all zero: a readable axis anyway
  if [[ $ref_state == ran ]]; then
    sub="our stack (gateway, writer, Redis with AOF) against Express + connect-redis behind nginx (Redis without AOF)"
  else
    sub="our stack (gateway, writer, Redis with AOF); the reference stack was not measured in this run"
  fi
  ((negative == 0)) || note="a negative count (increments in flight when wrk stopped, landed after it) is shown as 0"
  local absent=""
  [[ $ref_state == ran ]] || absent="set style textbox opaque noborder
set label 1 \"$ref_state\" at 1, graph 0.3 center boxed font \"Helvetica,12\" textcolor rgb \"#777777\""
  draw increments "Increments per second and lost updates" "$(
    preamble "$RUN_DIR/increments.svg"
    cat <<EOF
set multiplot
set label 90 "Increments (GET /increment on one session), with the lost-update check" at screen 0.5, 0.95 center font "Helvetica,16" textcolor rgb "#222222"
set label 91 "$sub" at screen 0.5, 0.895 center font "Helvetica,11" textcolor rgb "#222222"
\$d << EOD
$rows
EOD
set xrange [-0.6:1.6]
set xtics ("{/:Bold our stack}" 0, "reference\n(Express)" 1)
set lmargin at screen 0.09
set rmargin at screen 0.47
set bmargin at screen 0.2
set tmargin at screen 0.78
set title "increments per second" font "Helvetica,13"
set yrange [0:$ytop_r]
$absent
plot \$d using 1:2:5 with boxes lc rgb variable, \
     \$d using 1:2:6 with labels offset 0,0.8 font "Helvetica,12" textcolor rgb "#222222"
unset label
set lmargin at screen 0.58
set rmargin at screen 0.97
set title "lost updates (of the increments answered)" font "Helvetica,13"
set format y "%g"
set yrange [0:$ytop_l]
$absent
$(footnote "wrk -t${M[meta.threads]:-?} -c${M[meta.connections]:-?}, ${M[meta.round_duration_s]:-?} s, ${M[meta.nproc]:-?} cores shared by all; lost = count at start + increments answered − count at the end; run $RUN_NAME")
$([[ -n $note ]] && printf 'set label "%s" at screen 0.012, 0.07 left font "Helvetica,10" textcolor rgb "#777777" noenhanced\n' "$note")
plot \$d using 1:3:5 with boxes lc rgb variable, \
     \$d using 1:3:4 with labels offset 0,0.8 font "Helvetica,12" textcolor rgb "#222222"
unset multiplot
EOF
  )"
}

chart_reads
chart_cpu
chart_increments
((${#WROTE[@]} > 0)) || die "no chart written for $RUN_DIR"
say "wrote ${WROTE[*]}"
