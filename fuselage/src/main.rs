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
        Ok(Command::Mount(mut args)) => {
            // Test-only switch, read once at startup (see `transport::DENY_ENV`).
            args.simulate_uring_refusal =
                std::env::var_os(fuselage::transport::DENY_ENV).is_some_and(|v| v == "1");
            // Test-only: watch with inotify even where fanotify works.
            args.watch_inotify_only =
                std::env::var_os(fuselage::serve::INOTIFY_ENV).is_some_and(|v| v == "1");
            // The mount.fuse form detaches before anything starts; the
            // parent returns once the mount is live (or with the error).
            let mut detached = if args.background {
                match fuselage::daemon::detach() {
                    Ok(d) => Some(d),
                    Err(e) => {
                        eprintln!("fuselage: cannot detach into the background: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                None
            };
            serve(&args, move || {
                if let Some(d) = detached.as_mut() {
                    d.ready()
                }
            })
        }
        Err(e) => {
            eprintln!("fuselage: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: &fuselage::cli::MountArgs, on_ready: impl FnOnce()) -> ExitCode {
    match fuselage::serve::run_with(args, on_ready) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fuselage: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
