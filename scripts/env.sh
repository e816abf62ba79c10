# Shared build settings for the scripts: one build profile and one target directory outside
# the clone, so the quickstart, the tests and CI reuse the same DataFusion build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/custos/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
CUSTOS_BIN="$CARGO_TARGET_DIR/debug/custos"
