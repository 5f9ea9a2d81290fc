use std::process::ExitCode;

fn main() -> ExitCode {
    skiff_example_autoscale::main_from_env()
}
