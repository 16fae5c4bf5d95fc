//! A private PostgreSQL cluster owned by rankfit: `initdb` + `pg_ctl` from PATH or
//! /usr/lib/postgresql/*/bin, under a data dir of ours, on a loopback TCP port.
//!
//! Used when no `DATABASE_URL` is given, and by the tests (one fresh database each).
//! PostgreSQL refuses to run as root, so when we are root the server processes run as
//! the `postgres` system user (or `nobody`), which then owns the cluster directory.

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found in PATH or /usr/lib/postgresql/*/bin; \
         install them (Debian: apt-get install postgresql) or set DATABASE_URL to an existing server"
    )]
    BinariesNotFound,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("managed PostgreSQL at {dir}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
    #[error("managed PostgreSQL did not accept connections on port {port} within {secs}s; see {log}")]
    NotReady { port: u16, secs: u64, log: PathBuf },
}

/// A running managed cluster.
#[derive(Debug)]
pub struct ManagedCluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    /// Whether this handle started the server (and so stops it on `stop`).
    started_here: bool,
}

const SUPERUSER: &str = "rankfit";

impl ManagedCluster {
    /// Starts (initialising on first use) the cluster under `dir`, or attaches to it when
    /// another process already runs it. Safe to call from many processes at once.
    pub fn ensure(dir: &Path) -> Result<Self, ClusterError> {
        let io = |source| ClusterError::Io { dir: dir.to_path_buf(), source };
        let bin = find_bin_dir().ok_or(ClusterError::BinariesNotFound)?;
        let run_as = unprivileged_user();
        fs::create_dir_all(dir).map_err(io)?;
        // Parents must be traversable by the server user.
        if run_as.is_some() {
            let mut p = dir.to_path_buf();
            while let Some(parent) = p.parent() {
                if let Ok(meta) = fs::metadata(parent) {
                    let mode = meta.permissions().mode();
                    if mode & 0o001 == 0 {
                        let _ = fs::set_permissions(parent, fs::Permissions::from_mode(mode | 0o011));
                    }
                }
                p = parent.to_path_buf();
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(io)?;
        }
        // Serialise initdb/start across processes (parallel test binaries).
        let lock = File::create(dir.join("cluster.lock")).map_err(io)?;
        lock.lock().map_err(io)?;

        let pgdata = dir.join("pgdata");
        let port_file = dir.join("port");
        if !pgdata.join("PG_VERSION").exists() {
            let _ = fs::remove_dir_all(&pgdata);
            fs::create_dir_all(&pgdata).map_err(io)?;
            fs::set_permissions(&pgdata, fs::Permissions::from_mode(0o700)).map_err(io)?;
            chown_tree(&pgdata, run_as).map_err(io)?;
            let out = run(
                Command::new(bin.join("initdb")).arg("-D").arg(&pgdata).args([
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",
                ]),
                run_as,
            )
            .map_err(io)?;
            check(&out, "initdb")?;
            let port = free_port().map_err(io)?;
            fs::write(&port_file, port.to_string()).map_err(io)?;
            let conf = format!(
                "\n# managed by rankfit\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n\
                 max_connections = 300\nshared_buffers = 64MB\nfsync = on\nlog_min_messages = warning\n"
            );
            let conf_path = pgdata.join("postgresql.conf");
            let mut existing = fs::read_to_string(&conf_path).map_err(io)?;
            existing.push_str(&conf);
            fs::write(&conf_path, existing).map_err(io)?;
            chown_tree(&pgdata, run_as).map_err(io)?;
        }
        let port: u16 = fs::read_to_string(&port_file)
            .map_err(io)?
            .trim()
            .parse()
            .map_err(|_| ClusterError::Command { what: "reading the port file".into(), detail: port_file.display().to_string() })?;

        let mut cluster = ManagedCluster { dir: dir.to_path_buf(), port, bin, run_as, started_here: false };
        if !cluster.is_running() {
            let log = dir.join("postgres.log");
            if !log.exists() {
                File::create(&log).map_err(io)?;
            }
            chown_tree(&log, run_as).map_err(io)?;
            let out = run(
                Command::new(cluster.bin.join("pg_ctl")).arg("-D").arg(&pgdata).arg("-l").arg(&log).args(["-w", "-t", "60", "start"]),
                run_as,
            )
            .map_err(io)?;
            check(&out, "pg_ctl start")?;
            cluster.started_here = true;
        }
        cluster.wait_ready(Duration::from_secs(30))?;
        drop(lock);
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    fn is_running(&self) -> bool {
        let out = run(Command::new(self.bin.join("pg_ctl")).arg("-D").arg(self.dir.join("pgdata")).arg("status"), self.run_as);
        matches!(out, Ok(o) if o.status.success())
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(ClusterError::NotReady { port: self.port, secs: timeout.as_secs(), log: self.dir.join("postgres.log") })
    }

    /// Stops the server (fast shutdown): active sessions are disconnected.
    pub fn stop(&self) -> Result<(), ClusterError> {
        let out = run(
            Command::new(self.bin.join("pg_ctl")).arg("-D").arg(self.dir.join("pgdata")).args(["-m", "fast", "-w", "stop"]),
            self.run_as,
        )
        .map_err(|source| ClusterError::Io { dir: self.dir.clone(), source })?;
        check(&out, "pg_ctl stop")
    }

    /// Stops the server only if this handle started it.
    pub fn stop_if_owned(&self) -> Result<(), ClusterError> {
        if self.started_here {
            self.stop()
        } else {
            Ok(())
        }
    }
}

fn run(cmd: &mut Command, run_as: Option<(u32, u32)>) -> std::io::Result<Output> {
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
        // HOME of root is not readable by the server user.
        cmd.current_dir("/").env("HOME", "/tmp");
    }
    cmd.output()
}

fn check(out: &Output, what: &str) -> Result<(), ClusterError> {
    if out.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Command {
            what: what.to_string(),
            detail: format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout)),
        })
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// initdb/pg_ctl from PATH, else the newest /usr/lib/postgresql/*/bin.
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for p in std::env::split_paths(&paths) {
            if p.join("initdb").is_file() && p.join("pg_ctl").is_file() {
                return Some(p);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// When running as root: the (uid, gid) of `postgres`, else `nobody`.
fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions; declared here to avoid a libc dependency.
    extern "C" {
        fn geteuid() -> u32;
    }
    if unsafe { geteuid() } != 0 {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let entry = |name: &str| {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
    };
    entry("postgres").or_else(|| entry("nobody"))
}

fn chown_tree(path: &Path, run_as: Option<(u32, u32)>) -> std::io::Result<()> {
    let Some((uid, gid)) = run_as else { return Ok(()) };
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), run_as)?;
        }
    }
    Ok(())
}
