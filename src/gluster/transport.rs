//! How CLI commands reach glusterd: one `gluster` process per command, or a
//! pool of long-lived `gluster` sessions fed commands on stdin.
//!
//! Every command is a list of [`CliArg`] words handed to the CLI as separate
//! arguments (one-shot) or as one line of plain words (session); no shell is
//! ever involved and a word can never be read as a CLI option.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use super::error::{GlusterError, classify_cli_failure};
use super::xml::Envelope;
use crate::metrics::{self, GlusterOutcome};

/// glusterd's management port, used to check that a remote glusterd answers.
pub const GLUSTERD_PORT: u16 = 24007;

/// One word of a gluster command: printable ASCII from a small set, never
/// empty, never starting with `-`. Safe as an argv entry and as a word on a
/// session line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliArg(String);

impl CliArg {
    pub fn new(word: impl Into<String>) -> Result<CliArg, GlusterError> {
        let word = word.into();
        let plain = !word.is_empty()
            && word.len() <= 4096
            && !word.starts_with('-')
            && word
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:/=,*%+@-".contains(&b));
        if plain {
            Ok(CliArg(word))
        } else {
            Err(GlusterError::UnsafeArgument(word))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A whole command: its words and the closing tag that ends its XML output.
#[derive(Clone, Debug)]
pub struct CliCommand {
    pub words: Vec<CliArg>,
    /// Name used in errors and logs, e.g. `volume create`.
    pub name: String,
    end_tag: &'static str,
    /// Printed by the CLI itself and only flushed when it exits, so it
    /// cannot run inside a session.
    standalone: bool,
    /// Asks for the CLI's XML (`--xml`); some answers exist only as text.
    xml: bool,
}

impl CliCommand {
    pub fn new(words: Vec<CliArg>) -> CliCommand {
        let name = words
            .iter()
            .take(2)
            .map(CliArg::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        CliCommand {
            words,
            name,
            end_tag: "</cliOutput>",
            standalone: false,
            xml: true,
        }
    }

    /// For the few answers the CLI only gives as text (`volume status V
    /// client-list` has no counts in its XML): run on its own, without
    /// `--xml`, its output complete when it holds `end_marker`.
    pub fn text(words: Vec<CliArg>, end_marker: &'static str) -> CliCommand {
        CliCommand {
            xml: false,
            ..CliCommand::new(words).standalone(end_marker)
        }
    }

    pub fn wants_xml(&self) -> bool {
        self.xml
    }

    /// For CLI-local commands (`volume set help-xml`): XML not wrapped in
    /// `<cliOutput>`, and only flushed when the CLI exits.
    pub fn standalone(mut self, end_tag: &'static str) -> CliCommand {
        self.end_tag = end_tag;
        self.standalone = true;
        self
    }

    pub fn end_tag(&self) -> &'static str {
        self.end_tag
    }

    /// The command as one line of plain words, for a CLI reading stdin.
    pub fn line(&self) -> String {
        let mut line = self
            .words
            .iter()
            .map(CliArg::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        line.push('\n');
        line
    }

    /// The inverse of [`CliCommand::line`], for the server side of a
    /// transport: one line of [`CliArg`] words separated by single spaces,
    /// with at most one trailing newline.
    pub fn from_line(line: &str) -> Result<CliCommand, GlusterError> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let words = line
            .split(' ')
            .map(CliArg::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CliCommand::new(words))
    }
}

/// Where glusterd listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlusterdAddress {
    /// Local unix socket: full access.
    Socket(PathBuf),
    /// `--remote-host`: glusterd only answers read commands this way.
    RemoteHost(String),
}

impl GlusterdAddress {
    fn cli_flag(&self) -> OsString {
        match self {
            GlusterdAddress::Socket(path) => {
                let mut flag = OsString::from("--glusterd-sock=");
                flag.push(path);
                flag
            }
            GlusterdAddress::RemoteHost(host) => OsString::from(format!("--remote-host={host}")),
        }
    }

    /// Fails fast when nothing listens, instead of letting a command hang.
    pub async fn check_listening(&self) -> Result<(), GlusterError> {
        let unreachable = |detail: String| GlusterError::Unreachable {
            target: self.to_string(),
            detail,
        };
        match self {
            GlusterdAddress::Socket(path) => tokio::net::UnixStream::connect(path)
                .await
                .map(drop)
                .map_err(|e| unreachable(e.to_string())),
            GlusterdAddress::RemoteHost(host) => {
                let connect = tokio::net::TcpStream::connect((host.as_str(), GLUSTERD_PORT));
                match tokio::time::timeout(Duration::from_secs(2), connect).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(unreachable(e.to_string())),
                    Err(_) => Err(unreachable("no answer within 2s".into())),
                }
            }
        }
    }
}

impl std::fmt::Display for GlusterdAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GlusterdAddress::Socket(path) => write!(f, "unix:{}", path.display()),
            GlusterdAddress::RemoteHost(host) => write!(f, "{host}:{GLUSTERD_PORT}"),
        }
    }
}

/// Runs gluster CLI commands and returns their XML output.
#[async_trait]
pub trait CliTransport: Send + Sync {
    async fn run(&self, command: &CliCommand) -> Result<String, GlusterError>;
    /// Where commands go, for messages.
    fn describe(&self) -> String;
    /// glfsheal's `info-summary` XML for a volume. On a server (over ssh)
    /// the CLI's `volume heal V info summary` does, which runs glfsheal
    /// against glusterd's default socket; against another socket glfsheal
    /// must be run directly. No default: a transport that wraps another
    /// must pass it on, not fall back to the CLI.
    async fn heal_summary(&self, volume: &CliArg) -> Result<String, GlusterError>;
}

/// `volume heal V info summary`; the CLI prints glfsheal's XML as its own.
pub fn heal_summary_command(volume: &CliArg) -> Result<CliCommand, GlusterError> {
    let words = ["volume", "heal", volume.as_str(), "info", "summary"]
        .into_iter()
        .map(CliArg::new)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CliCommand::new(words).standalone("</cliOutput>"))
}

/// Where distributions install glfsheal, the gfapi helper behind `volume
/// heal V info` (Debian's glusterfs-common; Fedora's, upstream's).
pub fn glfsheal_program() -> PathBuf {
    let debian = PathBuf::from(format!(
        "/usr/lib/{}-linux-gnu/glusterfs/glfsheal",
        std::env::consts::ARCH
    ));
    [
        debian.clone(),
        PathBuf::from("/usr/libexec/glusterfs/glfsheal"),
        PathBuf::from("/usr/sbin/glfsheal"),
    ]
    .into_iter()
    .find(|p| p.exists())
    .unwrap_or(debian)
}

/// Any transport, with each command it runs recorded in the metrics by
/// command name, outcome and latency: [`super::GlusterCli`] runs every
/// command (one-shot, session or ssh) through one.
pub struct RecordedTransport(Arc<dyn CliTransport>);

impl RecordedTransport {
    pub fn new(transport: Arc<dyn CliTransport>) -> RecordedTransport {
        RecordedTransport(transport)
    }
}

#[async_trait]
impl CliTransport for RecordedTransport {
    async fn run(&self, command: &CliCommand) -> Result<String, GlusterError> {
        let started = Instant::now();
        let answer = self.0.run(command).await;
        let took = started.elapsed();
        let words: Vec<&str> = command.words.iter().map(CliArg::as_str).collect();
        metrics::record_gluster_command(&words, outcome(command, &answer), took);
        answer
    }

    async fn heal_summary(&self, volume: &CliArg) -> Result<String, GlusterError> {
        let started = Instant::now();
        let answer = self.0.heal_summary(volume).await;
        let took = started.elapsed();
        let command = heal_summary_command(volume)?;
        let words: Vec<&str> = command.words.iter().map(CliArg::as_str).collect();
        metrics::record_gluster_command(&words, outcome(&command, &answer), took);
        answer
    }

    fn describe(&self) -> String {
        self.0.describe()
    }
}

/// Refused when glusterd answered `opRet` -1 (the CLI exits 0 even then);
/// answers that are not a `<cliOutput>` envelope count as they came.
fn outcome(command: &CliCommand, answer: &Result<String, GlusterError>) -> GlusterOutcome {
    match answer {
        Err(_) => GlusterOutcome::Error,
        Ok(_) if !command.wants_xml() || command.standalone => GlusterOutcome::Ok,
        Ok(text) => match Envelope::parse(&command.name, text) {
            Ok(envelope) if envelope.failed() => GlusterOutcome::Refused,
            Ok(_) => GlusterOutcome::Ok,
            Err(_) => GlusterOutcome::Error,
        },
    }
}

/// One `gluster --mode=script --xml ...` process per command.
pub struct OneShotCli {
    program: PathBuf,
    address: GlusterdAddress,
    timeout: Duration,
}

impl OneShotCli {
    pub fn new(program: impl Into<PathBuf>, address: GlusterdAddress, timeout: Duration) -> Self {
        OneShotCli {
            program: program.into(),
            address,
            timeout,
        }
    }
}

#[async_trait]
impl CliTransport for OneShotCli {
    async fn run(&self, command: &CliCommand) -> Result<String, GlusterError> {
        let mut cli = Command::new(&self.program);
        cli.arg("--mode=script");
        if command.xml {
            cli.arg("--xml");
        }
        cli.arg(self.address.cli_flag())
            .args(command.words.iter().map(CliArg::as_str));
        self.answer(command, cli).await
    }

    fn describe(&self) -> String {
        self.address.to_string()
    }

    /// The CLI's `volume heal` ignores `--glusterd-sock` (glfsheal looks for
    /// the default socket), so against a socket glfsheal is run directly.
    async fn heal_summary(&self, volume: &CliArg) -> Result<String, GlusterError> {
        let GlusterdAddress::Socket(socket) = &self.address else {
            return self.run(&heal_summary_command(volume)?).await;
        };
        let command = heal_summary_command(volume)?;
        let mut heal = Command::new(glfsheal_program());
        heal.arg(volume.as_str())
            .args(["info-summary", "--xml", "glusterd-sock"])
            .arg(socket);
        self.answer(&command, heal).await
    }
}

impl OneShotCli {
    /// Runs `program` (the CLI or glfsheal) within the timeout; its answer
    /// is whatever it printed up to the command's end tag, whatever its exit
    /// status (both exit non-zero on failures they also report in the XML).
    async fn answer(
        &self,
        command: &CliCommand,
        mut program: Command,
    ) -> Result<String, GlusterError> {
        program
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = tokio::time::timeout(self.timeout, program.output())
            .await
            .map_err(|_| timeout(command, self.timeout))?
            .map_err(GlusterError::Spawn)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if stdout.contains(command.end_tag) {
            return Ok(stdout.into_owned());
        }
        let text = format!("{}{}", stdout, String::from_utf8_lossy(&output.stderr));
        Err(classify_cli_failure(&command.name, &self.address, &text))
    }
}

/// A pool of interactive `gluster --mode=script --xml` processes, each fed one
/// command line at a time. It saves the CLI's ~50 ms start-up on every
/// command. A session whose command times out is killed; one that exits (the
/// CLI quits on a command line it cannot parse) is replaced, and the command
/// is run once more as a one-shot so the caller sees the CLI's own message.
/// Sessions idle for longer than [`SESSION_IDLE_TTL`] end, but one is kept.
pub struct SessionPool {
    program: PathBuf,
    address: GlusterdAddress,
    timeout: Duration,
    idle: Arc<IdleSessions>,
    slots: Semaphore,
    fallback: OneShotCli,
}

/// How long a session beyond the first may sit unused.
pub const SESSION_IDLE_TTL: Duration = Duration::from_secs(30);

/// Sessions not running a command, least recently used first.
#[derive(Default)]
struct IdleSessions(Mutex<Vec<Session>>);

impl IdleSessions {
    fn take(&self) -> Option<Session> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put(&self, mut session: Session) {
        session.last_used = Instant::now();
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(session);
    }

    /// Ends sessions idle for longer than `ttl`, keeping the newest one.
    fn prune(&self, ttl: Duration) {
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        while idle.len() > 1 && now.duration_since(idle[0].last_used) > ttl {
            idle.remove(0);
        }
    }

    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl SessionPool {
    /// Must be called inside a tokio runtime (it starts the idle reaper).
    pub fn new(
        program: impl Into<PathBuf>,
        address: GlusterdAddress,
        timeout: Duration,
        max_sessions: usize,
    ) -> Self {
        let program = program.into();
        let idle = Arc::new(IdleSessions::default());
        let reaped = Arc::downgrade(&idle);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SESSION_IDLE_TTL / 3);
            loop {
                tick.tick().await;
                match reaped.upgrade() {
                    Some(idle) => idle.prune(SESSION_IDLE_TTL),
                    None => break,
                }
            }
        });
        SessionPool {
            fallback: OneShotCli::new(program.clone(), address.clone(), timeout),
            program,
            address,
            timeout,
            idle,
            slots: Semaphore::new(max_sessions.max(1)),
        }
    }

    /// Number of CLI processes kept alive between commands.
    pub fn idle_sessions(&self) -> usize {
        self.idle.len()
    }
}

#[async_trait]
impl CliTransport for SessionPool {
    async fn run(&self, command: &CliCommand) -> Result<String, GlusterError> {
        if command.standalone {
            return self.fallback.run(command).await;
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| GlusterError::Spawn(std::io::Error::other("session pool closed")))?;
        self.address.check_listening().await?;
        let mut session = match self.idle.take() {
            Some(session) => session,
            None => Session::spawn(&self.program, &self.address).map_err(GlusterError::Spawn)?,
        };
        match session.exec(command, self.timeout).await {
            Ok(xml) => {
                self.idle.put(session);
                Ok(xml)
            }
            Err(SessionEnd::TimedOut) => Err(timeout(command, self.timeout)),
            Err(SessionEnd::Exited) => self.fallback.run(command).await,
        }
    }

    fn describe(&self) -> String {
        self.address.to_string()
    }

    async fn heal_summary(&self, volume: &CliArg) -> Result<String, GlusterError> {
        self.fallback.heal_summary(volume).await
    }
}

enum SessionEnd {
    TimedOut,
    Exited,
}

struct Session {
    // Held so the process is killed when the session is dropped.
    _child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    pending: Vec<u8>,
    last_used: Instant,
}

impl Session {
    fn spawn(program: &Path, address: &GlusterdAddress) -> std::io::Result<Session> {
        let mut child = Command::new(program)
            .arg("--mode=script")
            .arg("--xml")
            .arg(address.cli_flag())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        Ok(Session {
            _child: child,
            stdin,
            stdout,
            pending: Vec::new(),
            last_used: Instant::now(),
        })
    }

    async fn exec(&mut self, command: &CliCommand, limit: Duration) -> Result<String, SessionEnd> {
        let exchange = async {
            self.stdin
                .write_all(command.line().as_bytes())
                .await
                .map_err(|_| SessionEnd::Exited)?;
            self.stdin.flush().await.map_err(|_| SessionEnd::Exited)?;
            let end = command.end_tag.as_bytes();
            let mut chunk = [0u8; 16 * 1024];
            loop {
                if let Some(at) = find(&self.pending, end) {
                    let rest = self.pending.split_off(at + end.len());
                    let doc = std::mem::replace(&mut self.pending, rest);
                    return Ok(String::from_utf8_lossy(&doc).trim().to_string());
                }
                let n = self
                    .stdout
                    .read(&mut chunk)
                    .await
                    .map_err(|_| SessionEnd::Exited)?;
                if n == 0 {
                    return Err(SessionEnd::Exited);
                }
                self.pending.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| SessionEnd::TimedOut)?
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn timeout(command: &CliCommand, limit: Duration) -> GlusterError {
    GlusterError::Timeout {
        command: command.name.clone(),
        seconds: limit.as_secs(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers commands and heal summaries differently.
    struct TwoAnswers;

    #[async_trait]
    impl CliTransport for TwoAnswers {
        async fn run(&self, _: &CliCommand) -> Result<String, GlusterError> {
            Ok("from the CLI".into())
        }
        fn describe(&self) -> String {
            "two answers".into()
        }
        async fn heal_summary(&self, _: &CliArg) -> Result<String, GlusterError> {
            Ok("from glfsheal".into())
        }
    }

    #[tokio::test]
    async fn the_metrics_wrapper_passes_heal_summaries_on() {
        // It once fell back to the CLI's `volume heal`, which ignores the
        // socket glfsheal must be told.
        let recorded = RecordedTransport::new(Arc::new(TwoAnswers));
        let volume = CliArg::new("csi-pvc-1").unwrap();
        assert_eq!(
            recorded.heal_summary(&volume).await.unwrap(),
            "from glfsheal"
        );
    }

    #[test]
    fn cli_args_are_plain_words() {
        for ok in [
            "volume",
            "csi-pvc-1",
            "127.0.0.1:/data/glusterfs/csi-x",
            "system::",
            "auth.allow",
            "10.0.0.*",
        ] {
            assert!(CliArg::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-rf",
            "--remote-host=evil",
            "a b",
            "a\nvolume delete x",
            "a;b",
            "$(x)",
            "`x`",
            "a'b",
            "a\"b",
            "a\\b",
            "é",
            "a\tb",
        ] {
            assert!(
                matches!(CliArg::new(bad), Err(GlusterError::UnsafeArgument(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn command_line_and_name() {
        let cmd = CliCommand::new(
            ["volume", "start", "v1"]
                .into_iter()
                .map(|w| CliArg::new(w).unwrap())
                .collect(),
        );
        assert_eq!(cmd.name, "volume start");
        assert_eq!(cmd.line(), "volume start v1\n");
        let back = CliCommand::from_line(&cmd.line()).unwrap();
        assert_eq!((back.words, back.name), (cmd.words, cmd.name));
    }

    #[test]
    fn lines_read_back_only_in_the_written_form() {
        assert_eq!(CliCommand::from_line("pool list").unwrap().words.len(), 2);
        for bad in [
            "",
            "\n",
            "pool  list\n",
            " pool list\n",
            "pool list \n",
            "pool list\n\n",
            "pool list\nvolume delete x\n",
            "pool\tlist\n",
            "pool list\r\n",
            "volume info --xml\n",
        ] {
            assert!(
                matches!(
                    CliCommand::from_line(bad),
                    Err(GlusterError::UnsafeArgument(_))
                ),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn socket_flag() {
        let addr = GlusterdAddress::Socket("/run/glusterd.socket".into());
        assert_eq!(addr.cli_flag(), "--glusterd-sock=/run/glusterd.socket");
        assert_eq!(
            GlusterdAddress::RemoteHost("h1".into()).cli_flag(),
            "--remote-host=h1"
        );
    }

    #[tokio::test]
    async fn idle_sessions_end_after_the_ttl_but_one_stays() {
        let addr = GlusterdAddress::Socket("/nonexistent".into());
        let idle = IdleSessions::default();
        for _ in 0..3 {
            idle.put(Session::spawn(Path::new("true"), &addr).unwrap());
        }
        idle.prune(Duration::from_secs(60));
        assert_eq!(idle.len(), 3, "none idle long enough");
        for session in idle.0.lock().unwrap().iter_mut() {
            session.last_used -= Duration::from_secs(61);
        }
        idle.prune(Duration::from_secs(60));
        assert_eq!(idle.len(), 1);
    }

    #[tokio::test]
    async fn dead_socket_fails_fast_as_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let addr = GlusterdAddress::Socket(dir.path().join("glusterd.socket"));
        let err = addr.check_listening().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }
}
