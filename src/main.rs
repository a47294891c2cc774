//! The native `oc-sync` binary: the same CLI the npm launcher runs through the addon.

fn main() {
    std::process::exit(oc_sync::cli::run_process(std::env::args_os()));
}
