#!/bin/sh
# Fuzz the sans-IO protocol core for MINUTES minutes (default 5):
#   fuzz/run.sh 15
# New coverage goes to fuzz/corpus-grown/ (not committed), crashes and
# slow inputs to fuzz/crashes/ (not committed).  fuzz/corpus/ holds the seeds
# (seed_*, from make_corpus.py) and the merged corpus; to fold new coverage in:
#   python fuzz/fuzz_core.py -merge=1 -max_len=8192 fuzz/corpus fuzz/corpus-grown
# Reproduce a crash:  python fuzz/fuzz_core.py fuzz/crashes/crash-<sha>
# Minimise it:        python fuzz/fuzz_core.py -minimize_crash=1 \
#                       -max_total_time=60 fuzz/crashes/crash-<sha>
set -eu
MINUTES=${1:-5}
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}
mkdir -p "$HERE/crashes" "$HERE/corpus-grown"
exec "$PYTHON" "$HERE/fuzz_core.py" \
    -max_total_time=$((MINUTES * 60)) \
    -max_len=8192 \
    -timeout=10 \
    -rss_limit_mb=2048 \
    -print_final_stats=1 \
    -artifact_prefix="$HERE/crashes/" \
    "$HERE/corpus-grown" "$HERE/corpus"
