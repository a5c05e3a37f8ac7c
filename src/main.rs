fn main() -> std::process::ExitCode {
    jvm_guard::cli::main()
}
