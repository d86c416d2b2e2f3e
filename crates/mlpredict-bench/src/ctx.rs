//! What every scenario runs through: the options, the mock server and
//! mlpredict as processes, their scratch directories and logs, and the
//! report being filled.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

use crate::procs::{Measured, Mock, Running};
use crate::{Options, Report};

pub(crate) struct Ctx<'a> {
    pub o: &'a Options,
    pub inputs: PathBuf,
    pub logs: PathBuf,
    pub report: Report,
}

/// Remove a run's outputs and local files, keeping its pipeline.toml (the
/// report's command lines refer to it).
pub(crate) fn cleanup(dir: &Path) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name() == "pipeline.toml" {
            continue;
        }
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

pub(crate) fn fresh_dir(p: &Path) -> anyhow::Result<()> {
    if p.exists() {
        std::fs::remove_dir_all(p)?;
    }
    std::fs::create_dir_all(p)?;
    Ok(())
}

impl Ctx<'_> {
    /// A run's directory under the work directory, emptied.
    pub(crate) fn scratch(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.o.work.join(name);
        fresh_dir(&dir)?;
        Ok(dir)
    }

    pub(crate) fn write_config(&self, dir: &Path, toml: &str) -> anyhow::Result<PathBuf> {
        let p = dir.join("pipeline.toml");
        std::fs::write(&p, toml)?;
        Ok(p)
    }

    pub(crate) fn start_run(&self, config: &Path, name: &str) -> anyhow::Result<Running> {
        let mut cmd = Command::new(&self.o.bin);
        cmd.args(["run", "--config"]).arg(config);
        cmd.env("MLPREDICT_LOG", "warn");
        Running::start(cmd, &self.logs, name)
    }

    pub(crate) fn run_to_end(&mut self, config: &Path, name: &str) -> anyhow::Result<Measured> {
        let m = self.start_run(config, name)?.wait()?;
        if m.exit_code != 0 {
            bail!(
                "{name}: mlpredict exited with {}:\n{}",
                m.exit_code,
                m.stderr_tail
            );
        }
        Ok(m)
    }

    pub(crate) fn note_command(&mut self, cmd: String) {
        if !self.report.commands.contains(&cmd) {
            self.report.commands.push(cmd);
        }
    }

    pub(crate) fn mock(&mut self, args: &[&str], name: &str) -> anyhow::Result<Mock> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        self.note_command(format!(
            "{} mock-server --port 0 {}",
            self.o.bin.display(),
            args.join(" ")
        ));
        Mock::start(&self.o.bin, &args, &self.logs, name)
    }
}
