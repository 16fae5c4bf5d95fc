fn main() -> anyhow::Result<()> {
    rankfit_cli::main()
}
