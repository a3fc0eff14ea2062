//! Real worker and scheduler processes for the crash tests: spawned from the `testfleet`
//! binary, killed with SIGKILL, paused and resumed with SIGSTOP/SIGCONT, and never
//! outliving the test that started them.
//!
//! Processes share the test's configuration file unless one is started with a tweaked
//! copy of its own ([`Processes::spawn_tweaked`]), e.g. its broker or store URL pointed
//! at a fault proxy while the others go direct. Whatever a process's store URL, the test
//! kinds record their side effects straight to the test's own Redis (see
//! [`kinds::RECORDS_URL_VAR`]), so a fault injected between a worker and its store never
//! hides what the worker did.
//!
//! Each process writes its log (stdout and stderr) to a file in a directory of the
//! test's own. When the test fails, the tail of every log is printed, killed processes'
//! included; when it passes, the directory is removed.
//!
//! - [`audit`]: the end state a test checks: effects, markers, records, empty routes.
//! - [`executions`]: every execution of the tracked kinds, and the check that no job ran
//!   twice at the same time.
//! - [`kinds`]: the job kinds those processes run; [`keys`]: where they record side effects.
//! - [`steps`]: steps the fault tests share (consumers, running jobs, executions).
//! - [`rabbitmqctl`]: asking RabbitMQ what AMQP cannot (unacknowledged counts) and
//!   closing connections.
//! - [`world`]: one test's namespace, queue, backends, producer and processes, checks of
//!   the end state, and cleanup.

pub mod audit;
pub mod executions;
pub mod keys;
pub mod kinds;
pub mod rabbitmqctl;
pub mod steps;
pub mod world;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use jobfleet_common::Config;

/// Which role a process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `testfleet worker`: a worker with the built-in and the test kinds.
    Worker,
    /// `testfleet scheduler`: the scheduler, as `jobfleet scheduler` runs it.
    Scheduler,
}

impl Role {
    /// The subcommand.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Worker => "worker",
            Self::Scheduler => "scheduler",
        }
    }
}

/// A process started by [`Processes`]; its index there.
pub type ProcId = usize;

struct Proc {
    role: Role,
    child: Child,
    log: PathBuf,
    /// Killed by the test on purpose, so its exit is not a failure.
    killed: bool,
}

/// The processes of one test, with a shared configuration file.
pub struct Processes {
    bin: PathBuf,
    dir: PathBuf,
    config: PathBuf,
    /// What the shared file holds, for the tweaked copies.
    base: Config,
    procs: Vec<Proc>,
}

impl Processes {
    /// Writes `config` to a file in a fresh directory; processes started later run `bin`
    /// (the `testfleet` binary) with it.
    pub fn new(bin: impl Into<PathBuf>, config: &Config) -> Self {
        let dir = std::env::temp_dir().join(format!("jobfleet-crash-{}", config.namespace));
        std::fs::create_dir_all(&dir).expect("create the test's directory");
        let path = dir.join("config.toml");
        let text = toml::to_string(config).expect("the config serialises to TOML");
        std::fs::write(&path, text).expect("write the config file");
        Self {
            bin: bin.into(),
            dir,
            config: path,
            base: config.clone(),
            procs: Vec::new(),
        }
    }

    /// Starts a process running `role` with a configuration file of its own: the shared
    /// configuration with `tweak` applied.
    pub fn spawn_tweaked(&mut self, role: Role, tweak: impl FnOnce(&mut Config)) -> ProcId {
        let mut config = self.base.clone();
        tweak(&mut config);
        config.validate().expect("the tweaked config is valid");
        let path = self
            .dir
            .join(format!("{:02}-{}.toml", self.procs.len(), role.as_str()));
        let text = toml::to_string(&config).expect("the config serialises to TOML");
        std::fs::write(&path, text).expect("write the config file");
        self.start(role, &path, &[])
    }

    /// Starts a process running `role`.
    pub fn spawn(&mut self, role: Role) -> ProcId {
        self.spawn_with(role, &[])
    }

    /// Starts a process running `role` with extra environment variables, e.g.
    /// `JOBFLEET_WORKER__CONCURRENCY` to override one key of the shared file.
    pub fn spawn_with(&mut self, role: Role, env: &[(&str, &str)]) -> ProcId {
        let config = self.config.clone();
        self.start(role, &config, env)
    }

    fn start(&mut self, role: Role, config: &Path, env: &[(&str, &str)]) -> ProcId {
        let id = self.procs.len();
        let log = self.dir.join(format!("{id:02}-{}.log", role.as_str()));
        let out = File::create(&log).expect("create a log file");
        let err = out.try_clone().expect("clone the log file handle");
        let mut command = Command::new(&self.bin);
        command
            .arg(role.as_str())
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // The file decides: a JOBFLEET_* variable in the test's environment (a developer's
        // own settings) must not leak into the processes under test.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("JOBFLEET_") || name == "RUST_LOG" {
                command.env_remove(name.as_ref());
            }
        }
        command.env(kinds::RECORDS_URL_VAR, self.base.store.url());
        command.envs(env.iter().copied());
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.procs.push(Proc {
            role,
            child,
            log,
            killed: false,
        });
        id
    }

    /// The process's pid.
    pub fn pid(&self, id: ProcId) -> u32 {
        self.procs[id].child.id()
    }

    /// `kill -9`, and reaps it.
    pub fn kill(&mut self, id: ProcId) {
        let proc = &mut self.procs[id];
        proc.killed = true;
        // An error means it already exited, which `wait` reports.
        let _ = proc.child.kill();
        let _ = proc.child.wait();
    }

    /// SIGSTOP: the process stops at once, sockets and all, as in a long GC pause.
    pub fn pause(&self, id: ProcId) {
        signal("STOP", self.pid(id));
    }

    /// SIGCONT.
    pub fn resume(&self, id: ProcId) {
        signal("CONT", self.pid(id));
    }

    /// The processes of `role` that the test has not killed.
    pub fn live(&self, role: Role) -> Vec<ProcId> {
        (0..self.procs.len())
            .filter(|&id| self.procs[id].role == role && !self.procs[id].killed)
            .collect()
    }

    /// Panics, with its log, if a process the test did not kill has exited.
    pub fn assert_alive(&mut self) {
        for id in 0..self.procs.len() {
            let proc = &mut self.procs[id];
            if proc.killed {
                continue;
            }
            if let Ok(Some(status)) = proc.child.try_wait() {
                proc.killed = true;
                panic!(
                    "{} process {id} exited by itself ({status}); its log:\n{}",
                    proc.role.as_str(),
                    tail(&proc.log, 80)
                );
            }
        }
    }

    /// The processes of `role` that exited by themselves since the last call (a job that
    /// crashes its worker, on purpose), reaped and from now on counted as killed.
    pub fn take_exited(&mut self, role: Role) -> Vec<ProcId> {
        let mut exited = Vec::new();
        for (id, proc) in self.procs.iter_mut().enumerate() {
            if proc.role == role && !proc.killed {
                if let Ok(Some(_)) = proc.child.try_wait() {
                    proc.killed = true;
                    exited.push(id);
                }
            }
        }
        exited
    }

    /// Log lines of every `role` process (killed ones included) that contain `needle`.
    pub fn count_in_logs(&self, role: Role, needle: &str) -> usize {
        self.procs
            .iter()
            .filter(|p| p.role == role)
            .map(|p| read(&p.log).lines().filter(|l| l.contains(needle)).count())
            .sum()
    }

    /// Log lines of process `id` that contain `needle`.
    pub fn lines_in_log(&self, id: ProcId, needle: &str) -> Vec<String> {
        read(&self.procs[id].log)
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }

    /// How many processes the test has started.
    pub fn started(&self) -> usize {
        self.procs.len()
    }

    /// Kills every process still running.
    pub fn kill_all(&mut self) {
        for id in 0..self.procs.len() {
            if !self.procs[id].killed {
                self.kill(id);
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.kill_all();
        if std::thread::panicking() {
            for (id, proc) in self.procs.iter().enumerate() {
                eprintln!(
                    "---- {} process {id}: {} ----\n{}",
                    proc.role.as_str(),
                    proc.log.display(),
                    tail(&proc.log, 25)
                );
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn signal(name: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}: {status}");
}

fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = read(path);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
