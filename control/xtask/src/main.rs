//! `xtask assets OUT_DIR`: renders the clap definitions of `s2ds`, `s2cs`
//! and `s2uc` into man pages (`OUT_DIR/man/NAME.1` and one page per
//! subcommand, `NAME-SUB.1`) and shell completions
//! (`OUT_DIR/completions/{bash,zsh,fish}/`), for the Debian packages
//! (scripts/build-debs.sh). Nothing is written by hand.

#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [cmd, out] if cmd == "assets" => match assets(Path::new(out)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("xtask: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: xtask assets OUT_DIR");
            ExitCode::from(2)
        }
    }
}

fn assets(out: &Path) -> std::io::Result<()> {
    let man = out.join("man");
    fs::create_dir_all(&man)?;
    let commands = [
        scistream_dataplane::cli::Cli::command(),
        scistream_control::cli::s2cs::Cli::command(),
        scistream_control::cli::s2uc::Cli::command(),
    ];
    for cmd in commands {
        let cmd = cmd.version(env!("CARGO_PKG_VERSION"));
        let name = cmd.get_name().to_string();
        write_man(&man, &cmd, &name)?;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let page = format!("{name}-{}", sub.get_name());
            let sub = sub
                .clone()
                .name(page.clone())
                .version(env!("CARGO_PKG_VERSION"));
            write_man(&man, &sub, &page)?;
        }
        for (shell, dir) in [
            (Shell::Bash, "bash"),
            (Shell::Zsh, "zsh"),
            (Shell::Fish, "fish"),
        ] {
            let dir: PathBuf = out.join("completions").join(dir);
            fs::create_dir_all(&dir)?;
            let mut c = cmd.clone();
            clap_complete::generate_to(shell, &mut c, &name, &dir)?;
        }
    }
    Ok(())
}

fn write_man(dir: &Path, cmd: &clap::Command, page: &str) -> std::io::Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .section("1")
        .source(format!("scistream {}", env!("CARGO_PKG_VERSION")))
        .manual("SciStream gateway")
        .render(&mut buf)?;
    fs::write(dir.join(format!("{page}.1")), buf)
}
