//! Refusals go to the server's syslog (authpriv), where admins look for
//! misuse of ssh keys, naming the ssh client that sent them.

use std::ffi::CString;

/// Most of a line handed to syslog.
const MAX_LINE: usize = 1000;

/// Logs `refusal` with the client sshd names in `SSH_CONNECTION`.
pub fn log_refusal(refusal: &str) {
    let connection = std::env::var("SSH_CONNECTION").ok();
    let line = line(
        connection.as_deref(),
        nix::unistd::getuid().as_raw(),
        refusal,
    );
    let Ok(line) = CString::new(line) else {
        return;
    };
    // SAFETY: the ident is a static C string (openlog keeps the pointer), and
    // the message goes through "%s", never as the format.
    unsafe {
        libc::openlog(c"glusterfs-csi".as_ptr(), libc::LOG_PID, libc::LOG_AUTHPRIV);
        libc::syslog(
            libc::LOG_AUTHPRIV | libc::LOG_WARNING,
            c"%s".as_ptr(),
            line.as_ptr(),
        );
        libc::closelog();
    }
}

/// `ssh-command: <who>: <refusal>`, one line of printable text.
fn line(connection: Option<&str>, uid: u32, refusal: &str) -> String {
    let line = format!(
        "ssh-command: {} as uid {uid}: {refusal}",
        client(connection)
    );
    line.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_LINE)
        .collect()
}

/// The client from sshd's `SSH_CONNECTION` ("client port server port").
fn client(connection: Option<&str>) -> String {
    let fields: Vec<&str> = connection.unwrap_or_default().split(' ').collect();
    let plain = |field: &str| {
        !field.is_empty()
            && field.len() <= 64
            && field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b':' || b == b'%')
    };
    match fields.as_slice() {
        [address, port, ..] if plain(address) && plain(port) => {
            format!("ssh client {address} port {port}")
        }
        _ if connection.is_none() => "caller outside ssh (no SSH_CONNECTION)".to_string(),
        _ => "ssh client (unreadable SSH_CONNECTION)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_the_client_and_stay_one_line() {
        assert_eq!(
            line(
                Some("192.168.1.31 51234 192.168.1.21 22"),
                0,
                "refused `peer detach x`: no"
            ),
            "ssh-command: ssh client 192.168.1.31 port 51234 as uid 0: refused `peer detach x`: no"
        );
        assert!(line(Some("fe80::1%eth0 2222 fe80::2 22"), 5, "r").contains("fe80::1%eth0"));
        assert!(line(None, 0, "r").contains("outside ssh"));
        assert!(line(Some("$(id) 1 2 3"), 0, "r").contains("unreadable"));
        let hostile = line(None, 0, &format!("a\nb\0c{}", "x".repeat(5000)));
        assert!(!hostile.chars().any(char::is_control));
        assert_eq!(hostile.chars().count(), MAX_LINE);
        assert!(CString::new(hostile).is_ok());
    }
}
