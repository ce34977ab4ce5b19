fn main() {
    std::process::exit(fuseval::cli::main().code());
}
