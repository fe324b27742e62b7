//! `hearth-assets OUT_DIR`: writes the man pages (`man/hearth.1` and one
//! page per subcommand, `man/hearth-devices.1`, ...) and the bash, zsh and
//! fish completions (`completions/`) from the same clap definitions the
//! `hearth` binary parses, so they never drift from it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: hearth-assets OUT_DIR");
        return ExitCode::from(64);
    };
    match write_all(&out) {
        Ok(n) => {
            println!("hearth-assets: {n} files in {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hearth-assets: {e}");
            ExitCode::from(74)
        }
    }
}

fn write_all(out: &Path) -> std::io::Result<usize> {
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let mut cmd = hearth::cli::Cli::command();
    cmd.build();
    let mut written = 0;
    written += man_pages(&cmd, "hearth", &man)?;
    for (shell, name) in [
        (Shell::Bash, "hearth"),
        (Shell::Zsh, "_hearth"),
        (Shell::Fish, "hearth.fish"),
    ] {
        let mut file = std::fs::File::create(completions.join(name))?;
        clap_complete::generate(shell, &mut hearth::cli::Cli::command(), "hearth", &mut file);
        written += 1;
    }
    Ok(written)
}

/// The page for `cmd`, named `name`, then one for each visible subcommand.
fn man_pages(cmd: &clap::Command, name: &str, dir: &Path) -> std::io::Result<usize> {
    // clap keeps names as &'static str; this tool runs once and exits.
    let page = cmd.clone().name(&*Box::leak(name.to_owned().into_boxed_str()));
    let mut buf = Vec::new();
    clap_mangen::Man::new(page).render(&mut buf)?;
    std::fs::write(dir.join(format!("{name}.1")), buf)?;
    let mut n = 1;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        n += man_pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(n)
}
