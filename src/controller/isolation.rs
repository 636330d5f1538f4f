//! Tenant isolation: which clients the Gluster servers let into the volumes
//! the driver creates. Set on every new volume before its first start (TLS
//! only takes effect on bricks started with it), in two strengths:
//!
//! - an address allow-list: `auth.allow` = the volume's servers plus the
//!   configured client addresses (`--client-addresses`);
//! - TLS between FUSE clients and bricks (`--tls`): `client.ssl`,
//!   `server.ssl`, and `auth.ssl-allow` = the allowed certificate common
//!   names, with the certificate, key and CA at one fixed directory that
//!   holds the server certificate on the servers and the client certificate
//!   in the node plugins (a client reads the path its volfile names, in its
//!   own mount namespace).
//!
//! Management traffic (glusterd's port 24007: volume lists, volfiles) is not
//! covered: its TLS is a host-wide setting the driver cannot make per volume.
//! While isolation is on, a StorageClass cannot loosen it (`volumeOptions`
//! keys in [`GUARDED_KEYS`] are refused).

use std::fmt;
use std::net::Ipv4Addr;

use super::params::{ParamError, VOLUME_OPTIONS, validate_brick_root};

pub const AUTH_ALLOW: &str = "auth.allow";
pub const AUTH_REJECT: &str = "auth.reject";
pub const AUTH_SSL_ALLOW: &str = "auth.ssl-allow";
pub const CLIENT_SSL: &str = "client.ssl";
pub const SERVER_SSL: &str = "server.ssl";
pub const OWN_CERT: &str = "ssl.own-cert";
pub const PRIVATE_KEY: &str = "ssl.private-key";
pub const CA_LIST: &str = "ssl.ca-list";

/// Options a StorageClass may not set while isolation is on: each could
/// let in clients the controller's settings keep out. `server.dynamic-auth
/// off` would keep a removed client's live connections.
pub const GUARDED_KEYS: [&str; 6] = [
    AUTH_ALLOW,
    AUTH_REJECT,
    AUTH_SSL_ALLOW,
    CLIENT_SSL,
    SERVER_SSL,
    "server.dynamic-auth",
];
/// Every `ssl.*` option (paths, CRL, ciphers, depth) is guarded too.
pub const GUARDED_PREFIX: &str = "ssl.";

/// File names in the certificate directory: gluster's own default names.
pub const CERT_FILE: &str = "glusterfs.pem";
pub const KEY_FILE: &str = "glusterfs.key";
pub const CA_FILE: &str = "glusterfs.ca";

/// The longest common name a certificate can carry (RFC 5280 ub-common-name).
const MAX_COMMON_NAME: usize = 64;

/// One entry of the address allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAddress {
    Exact(Ipv4Addr),
    /// `a.b.c.*`: the 256 addresses of a /24.
    Wildcard([u8; 3]),
}

impl ClientAddress {
    /// An IPv4 address or an `a.b.c.*` wildcard; CIDR is refused because
    /// glusterfs 10.3 takes it but matches it wrongly (measured: a /30
    /// refused addresses inside it, a /32 let another address in).
    pub fn parse(text: &str) -> Result<ClientAddress, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty entry".into());
        }
        if text.contains('/') {
            return Err(format!(
                "{text:?} is CIDR notation, which glusterfs 10.3 accepts in auth.allow but \
                 matches wrongly (a /30 refused addresses inside it, a /32 let another address \
                 in); list exact IPv4 addresses, or a.b.c.* for a whole /24"
            ));
        }
        if let Ok(address) = text.parse::<Ipv4Addr>() {
            return Ok(ClientAddress::Exact(address));
        }
        if let Some(prefix) = text.strip_suffix(".*") {
            let octets: Vec<Option<u8>> = prefix.split('.').map(parse_octet).collect();
            if let [Some(a), Some(b), Some(c)] = octets[..] {
                return Ok(ClientAddress::Wildcard([a, b, c]));
            }
        }
        Err(format!(
            "{text:?} is not an IPv4 address (192.168.1.31) or a.b.c.* wildcard (192.168.1.*); \
             host names, IPv6, ranges and other wildcards are not supported"
        ))
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddress::Exact(address) => write!(f, "{address}"),
            ClientAddress::Wildcard([a, b, c]) => write!(f, "{a}.{b}.{c}.*"),
        }
    }
}

/// A decimal octet without leading zeros (as Rust's IPv4 parser wants).
fn parse_octet(text: &str) -> Option<u8> {
    let plain = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    plain.then(|| text.parse().ok()).flatten()
}

/// TLS on the I/O path of new volumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// Directory holding [`CERT_FILE`], [`KEY_FILE`] and [`CA_FILE`], the
    /// same path on servers and in node plugins.
    pub cert_dir: String,
    /// Common names of the servers' certificates (the self-heal daemon and
    /// `heal info` connect to bricks with them).
    pub server_names: Vec<String>,
    /// Common names of the node plugins' certificates; `*` wildcards allowed.
    pub client_names: Vec<String>,
}

/// The controller's isolation settings, as given on its command line.
#[derive(Clone, Copy, Debug)]
pub struct IsolationFlags<'a> {
    pub client_addresses: &'a [String],
    pub tls: bool,
    pub tls_dir: &'a str,
    pub tls_server_names: &'a [String],
    pub tls_client_names: &'a [String],
}

/// A setting that cannot work, named by its flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{flag}: {reason}")]
pub struct IsolationError {
    pub flag: &'static str,
    pub reason: String,
}

fn refuse(flag: &'static str, reason: impl Into<String>) -> IsolationError {
    IsolationError {
        flag,
        reason: reason.into(),
    }
}

/// What the controller sets on each volume it creates; off by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Isolation {
    client_addresses: Vec<ClientAddress>,
    tls: Option<Tls>,
}

impl Isolation {
    /// Checks the settings once, at start-up.
    pub fn from_flags(flags: IsolationFlags<'_>) -> Result<Isolation, IsolationError> {
        let mut client_addresses: Vec<ClientAddress> = Vec::new();
        for text in flags.client_addresses {
            let address =
                ClientAddress::parse(text).map_err(|e| refuse("--client-addresses", e))?;
            if client_addresses.contains(&address) {
                return Err(refuse(
                    "--client-addresses",
                    format!("{address} is listed twice"),
                ));
            }
            client_addresses.push(address);
        }
        if !flags.tls {
            if let Some(flag) = [
                ("--tls-server-names", flags.tls_server_names),
                ("--tls-client-names", flags.tls_client_names),
            ]
            .iter()
            .find_map(|(flag, names)| (!names.is_empty()).then_some(*flag))
            {
                return Err(refuse(
                    flag,
                    "given without --tls: TLS would stay off; add --tls",
                ));
            }
            return Ok(Isolation {
                client_addresses,
                tls: None,
            });
        }
        if flags.tls_dir == "/" {
            return Err(refuse("--tls-dir", "not / itself"));
        }
        validate_brick_root(flags.tls_dir).map_err(|e| refuse("--tls-dir", e))?;
        let server_names = common_names("--tls-server-names", flags.tls_server_names)?;
        if server_names.is_empty() {
            return Err(refuse(
                "--tls-server-names",
                "--tls needs the common names of the Gluster servers' certificates: the \
                 self-heal daemon connects to bricks with them, and without them self-heal stops",
            ));
        }
        let client_names = common_names("--tls-client-names", flags.tls_client_names)?;
        if client_names.is_empty() {
            return Err(refuse(
                "--tls-client-names",
                "--tls needs the common names of the node plugins' certificates (wildcards \
                 like csi-node-* allowed): no node could mount otherwise",
            ));
        }
        Ok(Isolation {
            client_addresses,
            tls: Some(Tls {
                cert_dir: flags.tls_dir.to_string(),
                server_names,
                client_names,
            }),
        })
    }

    /// Isolation off: what `dev` and tests get unless they ask.
    pub fn off() -> Isolation {
        Isolation::default()
    }

    pub fn is_on(&self) -> bool {
        !self.client_addresses.is_empty() || self.tls.is_some()
    }

    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The options a new volume with bricks on `servers` gets, set before
    /// its first start. Servers named by IPv4 address join the allow-list
    /// (their own clients that fetched the volfile from another server come
    /// from there); host names cannot be matched reliably and are left out.
    pub fn volume_options(&self, servers: &[String]) -> Vec<(String, String)> {
        let mut options = Vec::new();
        if !self.client_addresses.is_empty() {
            let mut allowed: Vec<String> = Vec::new();
            let server_addresses = servers
                .iter()
                .filter(|s| s.parse::<Ipv4Addr>().is_ok())
                .cloned();
            let clients = self.client_addresses.iter().map(ToString::to_string);
            for address in server_addresses.chain(clients) {
                if !allowed.contains(&address) {
                    allowed.push(address);
                }
            }
            options.push((AUTH_ALLOW.to_string(), allowed.join(",")));
        }
        if let Some(tls) = &self.tls {
            let file = |name: &str| format!("{}/{name}", tls.cert_dir);
            let mut names: Vec<&str> = Vec::new();
            for name in tls.server_names.iter().chain(&tls.client_names) {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
            options.extend([
                (OWN_CERT.to_string(), file(CERT_FILE)),
                (PRIVATE_KEY.to_string(), file(KEY_FILE)),
                (CA_LIST.to_string(), file(CA_FILE)),
                (AUTH_SSL_ALLOW.to_string(), names.join(",")),
                (CLIENT_SSL.to_string(), "on".to_string()),
                (SERVER_SSL.to_string(), "on".to_string()),
            ]);
        }
        options
    }

    /// While isolation is on, a StorageClass cannot set what decides who
    /// gets in; without it, `volumeOptions` may (the administrator's own
    /// per-class allow-list or TLS).
    pub fn check_volume_options(&self, requested: &[(String, String)]) -> Result<(), ParamError> {
        if !self.is_on() {
            return Ok(());
        }
        match requested.iter().find(|(key, _)| is_guarded(key)) {
            None => Ok(()),
            Some((key, _)) => Err(ParamError {
                key: VOLUME_OPTIONS.into(),
                reason: format!(
                    "{key:?} decides which clients may connect, and the controller's tenant \
                     isolation ({}) sets it on every volume; a StorageClass cannot change it",
                    self.describe()
                ),
            }),
        }
    }

    /// One line for logs and messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.client_addresses.is_empty() {
            let list: Vec<String> = self
                .client_addresses
                .iter()
                .map(|a| a.to_string())
                .collect();
            parts.push(format!("auth.allow: servers and {}", list.join(",")));
        }
        if let Some(tls) = &self.tls {
            parts.push(format!(
                "TLS: certificates in {}, servers {}, clients {}",
                tls.cert_dir,
                tls.server_names.join(","),
                tls.client_names.join(",")
            ));
        }
        if parts.is_empty() {
            "off".into()
        } else {
            parts.join("; ")
        }
    }
}

fn is_guarded(key: &str) -> bool {
    GUARDED_KEYS.contains(&key) || key.starts_with(GUARDED_PREFIX)
}

/// Certificate common names for `auth.ssl-allow`: plain names with `*`
/// wildcards, no separators (gluster splits the list at commas only).
fn common_names(flag: &'static str, names: &[String]) -> Result<Vec<String>, IsolationError> {
    let mut checked: Vec<String> = Vec::new();
    for name in names.iter().map(|n| n.trim()) {
        if name.is_empty() {
            return Err(refuse(flag, "an empty entry"));
        }
        if name.len() > MAX_COMMON_NAME {
            return Err(refuse(
                flag,
                format!("{name:?} is longer than a certificate common name can be (64)"),
            ));
        }
        if name.starts_with('-')
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-*".contains(&b))
        {
            return Err(refuse(
                flag,
                format!(
                    "{name:?}: a common name may only hold letters, digits, '.', '_', '-' and \
                     '*' wildcards, not starting with '-' (one name per entry; ';' is no \
                     separator)"
                ),
            ));
        }
        if checked.iter().any(|n| n == name) {
            return Err(refuse(flag, format!("{name:?} is listed twice")));
        }
        checked.push(name.to_string());
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn flags<'a>(
        addresses: &'a [String],
        tls: bool,
        servers: &'a [String],
        clients: &'a [String],
    ) -> IsolationFlags<'a> {
        IsolationFlags {
            client_addresses: addresses,
            tls,
            tls_dir: "/etc/glusterfs-csi/tls",
            tls_server_names: servers,
            tls_client_names: clients,
        }
    }

    #[test]
    fn client_addresses_are_exact_or_a_last_octet_wildcard() {
        assert_eq!(
            ClientAddress::parse(" 192.168.1.31 "),
            Ok(ClientAddress::Exact(Ipv4Addr::new(192, 168, 1, 31)))
        );
        assert_eq!(
            ClientAddress::parse("10.0.7.*").map(|a| a.to_string()),
            Ok("10.0.7.*".to_string())
        );
        for bad in [
            "",
            "*",
            "10.*",
            "10.0.*.*",
            "10.0.7.1*",
            "10.0.256.*",
            "10.0.07.*",
            "010.0.0.1",
            "node1",
            "fd00::1",
            "10.0.0.1-10.0.0.9",
            "10.0.0.[1-3]",
            "10.0.0.?",
        ] {
            let e = ClientAddress::parse(bad).unwrap_err();
            assert!(!e.contains("CIDR"), "{bad:?}: {e}");
        }
        for cidr in ["10.0.0.0/24", "192.168.1.31/32", "10.0.0.0/30"] {
            let e = ClientAddress::parse(cidr).unwrap_err();
            assert!(e.contains("CIDR") && e.contains("matches wrongly"), "{e}");
        }
    }

    #[test]
    fn start_up_refuses_what_cannot_work_naming_the_flag() {
        let none: Vec<String> = Vec::new();
        let cidr = strings(&["192.168.1.31", "10.42.0.0/16"]);
        let e = Isolation::from_flags(flags(&cidr, false, &none, &none)).unwrap_err();
        assert_eq!(e.flag, "--client-addresses");
        assert!(
            e.to_string()
                .starts_with("--client-addresses: \"10.42.0.0/16\" is CIDR")
        );
        let twice = strings(&["10.0.0.1", "10.0.0.1"]);
        let e = Isolation::from_flags(flags(&twice, false, &none, &none)).unwrap_err();
        assert!(e.reason.contains("listed twice"), "{e}");

        let servers = strings(&["gluster-server"]);
        let clients = strings(&["csi-node-*"]);
        let e = Isolation::from_flags(flags(&none, false, &servers, &none)).unwrap_err();
        assert_eq!(e.flag, "--tls-server-names", "names without --tls: {e}");
        let e = Isolation::from_flags(flags(&none, true, &none, &clients)).unwrap_err();
        assert_eq!(e.flag, "--tls-server-names");
        assert!(e.reason.contains("self-heal"), "{e}");
        let e = Isolation::from_flags(flags(&none, true, &servers, &none)).unwrap_err();
        assert_eq!(e.flag, "--tls-client-names");
        for bad in ["a;b", "a b", "-x", "", "a,b", &"x".repeat(65)] {
            let names = strings(&[bad]);
            let e = Isolation::from_flags(flags(&none, true, &servers, &names)).unwrap_err();
            assert_eq!(e.flag, "--tls-client-names", "{bad:?}");
        }
        for dir in ["/", "etc/tls", "/etc/../tls", "/etc/tls/", "/etc/t ls"] {
            let mut f = flags(&none, true, &servers, &clients);
            f.tls_dir = dir;
            let e = Isolation::from_flags(f).unwrap_err();
            assert_eq!(e.flag, "--tls-dir", "{dir:?}");
        }
    }

    #[test]
    fn off_unless_asked() {
        let none: Vec<String> = Vec::new();
        let off = Isolation::from_flags(flags(&none, false, &none, &none)).unwrap();
        assert!(!off.is_on());
        assert_eq!(off, Isolation::off());
        assert!(off.volume_options(&strings(&["10.0.0.1"])).is_empty());
        assert_eq!(off.describe(), "off");
    }

    #[test]
    fn allow_list_is_the_ipv4_servers_then_the_clients_once_each() {
        let none: Vec<String> = Vec::new();
        let clients = strings(&["192.168.1.12", "192.168.1.31", "10.9.8.*"]);
        let isolation = Isolation::from_flags(flags(&clients, false, &none, &none)).unwrap();
        let servers = strings(&["192.168.1.11", "192.168.1.12", "gluster-3.example.com"]);
        assert_eq!(
            isolation.volume_options(&servers),
            [(
                "auth.allow".to_string(),
                "192.168.1.11,192.168.1.12,192.168.1.31,10.9.8.*".to_string()
            )]
        );
    }

    #[test]
    fn tls_options_name_one_directory_and_every_allowed_common_name() {
        let none: Vec<String> = Vec::new();
        let servers = strings(&["gluster-server"]);
        let clients = strings(&["csi-node-*", "gluster-server"]);
        let isolation = Isolation::from_flags(flags(&none, true, &servers, &clients)).unwrap();
        let options = isolation.volume_options(&strings(&["10.0.0.1"]));
        let expected = [
            ("ssl.own-cert", "/etc/glusterfs-csi/tls/glusterfs.pem"),
            ("ssl.private-key", "/etc/glusterfs-csi/tls/glusterfs.key"),
            ("ssl.ca-list", "/etc/glusterfs-csi/tls/glusterfs.ca"),
            ("auth.ssl-allow", "gluster-server,csi-node-*"),
            ("client.ssl", "on"),
            ("server.ssl", "on"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(options, expected, "no auth.allow without client addresses");
        for (key, value) in &options {
            assert!(super::super::params::is_option_key(key), "{key}");
            assert!(super::super::params::is_option_value(value), "{value}");
        }
        assert!(isolation.describe().contains("servers gluster-server"));
    }

    #[test]
    fn storage_classes_cannot_loosen_isolation_but_may_set_it_without() {
        let none: Vec<String> = Vec::new();
        let clients = strings(&["10.0.0.9"]);
        let on = Isolation::from_flags(flags(&clients, false, &none, &none)).unwrap();
        for key in [
            "auth.allow",
            "auth.reject",
            "auth.ssl-allow",
            "client.ssl",
            "server.ssl",
            "ssl.own-cert",
            "ssl.cipher-list",
            "server.dynamic-auth",
        ] {
            let requested = vec![
                ("performance.cache-size".to_string(), "64MB".to_string()),
                (key.to_string(), "x".to_string()),
            ];
            let e = on.check_volume_options(&requested).unwrap_err();
            assert_eq!(e.key, "volumeOptions");
            assert!(e.reason.starts_with(&format!("{key:?} decides")), "{e}");
            assert!(Isolation::off().check_volume_options(&requested).is_ok());
        }
        let fine = vec![("server.allow-insecure".to_string(), "off".to_string())];
        assert!(on.check_volume_options(&fine).is_ok());
    }
}
