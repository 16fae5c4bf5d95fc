fn main() -> std::process::ExitCode {
    rankfit_cli::main()
}
