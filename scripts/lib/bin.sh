# shellcheck shell=bash
# The fanout binary for the scripts in scripts/ (cluster-demo.sh, queue-bench.sh): sourced, not run.
# The caller defines ROOT (the checkout), `log MSG` and `die MSG`.

# fanout_bin: sets BIN to FANOUT_BIN when that is set, else to a release build of the checkout
# (built here); dies unless BIN is an executable.
fanout_bin() {
    if [ -n "${FANOUT_BIN:-}" ]; then
        BIN=$FANOUT_BIN
    else
        log "cargo build --release"
        cargo build --release --locked --quiet --manifest-path "$ROOT/Cargo.toml" || die "cargo build failed"
        BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/fanout
    fi
    [ -x "$BIN" ] || die "no fanout binary at $BIN"
}
