//! The `edge` binary: see `edge --help`.

fn main() -> std::process::ExitCode {
    edge_host::cli::main()
}
