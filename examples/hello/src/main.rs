use std::process::ExitCode;

fn main() -> ExitCode {
    skiff_example_hello::main_from_env()
}
