//! `hearth` exactly as shipped, for the integration tests to spawn.

fn main() -> std::process::ExitCode {
    hearth::cli::main()
}
