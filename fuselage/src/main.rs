//! The `fuselage` command-line binary. See `fuselage --help`.

use fuselage::cli::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    fuselage::log::init_from_env();
    match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("fuselage {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Command::Mount(args)) => match fuselage::serve::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fuselage: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("fuselage: {e}");
            ExitCode::from(2)
        }
    }
}
