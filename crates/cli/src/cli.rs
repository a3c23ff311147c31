//! The command line, as clap derive types. Each command's doc comment is its help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "accord",
    version,
    about = "Accord: a signed, replicated ledger for the organisations of an electoral alliance",
    long_about = "Accord: a signed, replicated ledger for the organisations of an electoral alliance.\n\n\
        Set-up commands (keygen, key, charter, token, tls) work on local files. `accord node` runs a node. \
        The other commands talk to a node's gRPC API, using a client config file given with \
        --config or the ACCORD_CONFIG environment variable.\n\n\
        Try `accord demo --dir /tmp/pal` for a ready-made alliance: four federated nodes \
        in one process."
)]
pub struct Cli {
    /// Client config file for the commands that talk to a node (they also take
    /// --config after the command name, which wins)
    #[arg(long, env = "ACCORD_CONFIG", value_name = "CLIENT.toml")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The client config named before the command (or by ACCORD_CONFIG), set once by
/// `commands::run`.
pub static DEFAULT_CLIENT_CONFIG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// How a node is reached: the client config file.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Client config file (TOML: node = "https://127.0.0.1:7400" with cert_sha256, the
    /// node's certificate fingerprint, or node = "http://…" for a node without TLS;
    /// token_file = "token"; optional as = "Organisation name"); default: `accord
    /// --config` or ACCORD_CONFIG
    #[arg(long, value_name = "CLIENT.toml")]
    pub config: Option<PathBuf>,
}

impl ClientArgs {
    pub fn config_path(&self) -> anyhow::Result<PathBuf> {
        self.config
            .clone()
            .or_else(|| DEFAULT_CLIENT_CONFIG.get().cloned())
            .ok_or_else(|| {
                anyhow::anyhow!("no client config: pass --config CLIENT.toml or set ACCORD_CONFIG")
            })
    }
}

/// Options of every command that publishes an entry.
#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Identity to publish as: a charter name or a public key in hex (default: `as` in
    /// the client config)
    #[arg(long = "as", value_name = "NAME|HEX")]
    pub as_: Option<String>,
    /// Print the published entry's id, author and seq as JSON
    #[arg(long)]
    pub json: bool,
}

/// Options of every command that lists something.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Changes a proposal can make.
#[derive(Debug, Subcommand)]
pub enum ProposeCommand {
    /// Admit an organisation
    Admit {
        #[command(flatten)]
        publish: PublishArgs,
        /// Its name
        #[arg(long)]
        name: String,
        /// Its Ed25519 public key in hex (`accord key show KEY.pem`)
        #[arg(long, value_name = "HEX")]
        key: String,
        /// member, secretary or observer (observers publish events and statements, not
        /// intentions, and do not vote)
        #[arg(long, default_value = "member")]
        role: String,
        /// Electoral Commission register id, e.g. PP53
        #[arg(long, value_name = "ID")]
        ec_id: Option<String>,
        /// Its node's address, host:port (with --node-cert-sha256): once it is
        /// admitted every node pins and dials it
        #[arg(long, value_name = "HOST:PORT", requires = "node_cert_sha256")]
        node_address: Option<String>,
        /// SHA-256 of its node's TLS certificate, 64 hex digits (`accord tls show`)
        #[arg(long, value_name = "HEX", requires = "node_address")]
        node_cert_sha256: Option<String>,
        #[arg(long, default_value = "")]
        rationale: String,
    },
    /// Remove an organisation: its log counts up to --up-to (default: the head of its
    /// log this node holds); later entries are kept as evidence and count nowhere
    Remove {
        #[command(flatten)]
        publish: PublishArgs,
        /// The organisation (name or hex key)
        #[arg(long, value_name = "NAME|HEX")]
        member: String,
        /// The last seq of its log that counts (default: the head this node holds)
        #[arg(long, value_name = "SEQ")]
        up_to: Option<u64>,
        #[arg(long, default_value = "")]
        rationale: String,
    },
    /// Recover an organisation whose key was lost or leaked, whose log is frozen by
    /// a fork, or whose node lost its log: its log counts up to --up-to (default:
    /// the head of its log this node holds, or the seq before a fork of it), and
    /// it goes on in a new log signed by --key (its new key: `accord keygen`)
    Recover {
        #[command(flatten)]
        publish: PublishArgs,
        /// The organisation (name or hex key)
        #[arg(long, value_name = "NAME|HEX")]
        member: String,
        /// The organisation's new public key, 64 hex digits
        #[arg(long, value_name = "HEX")]
        key: String,
        /// The last seq of its current log that counts (default: the head this node
        /// holds, or the seq before a fork)
        #[arg(long, value_name = "SEQ")]
        up_to: Option<u64>,
        #[arg(long, default_value = "")]
        rationale: String,
    },
    /// Appoint a secretary, or remove one (it becomes --to: observer by default, or
    /// member)
    Secretary {
        #[command(flatten)]
        publish: PublishArgs,
        /// appoint or remove
        action: SecretaryAction,
        /// The organisation (name or hex key)
        #[arg(long, value_name = "NAME|HEX")]
        member: String,
        /// The role a removed secretary takes
        #[arg(long, default_value = "observer")]
        to: String,
        #[arg(long, default_value = "")]
        rationale: String,
    },
    /// Change the quorum rule: majority, all, count:N (or N), lazy:DAYS (passes after
    /// DAYS unless a member objects, 1 to 13)
    Quorum {
        #[command(flatten)]
        publish: PublishArgs,
        rule: String,
        #[arg(long, default_value = "")]
        rationale: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SecretaryAction {
    Appoint,
    Remove,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 identity key (PKCS#8 PEM, mode 0600); prints its public id
    Keygen {
        /// File to write the key to
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite the file if it exists
        #[arg(long)]
        force: bool,
    },
    /// Inspect key files, or rotate a node's home identity key
    #[command(subcommand)]
    Key(KeyCommand),
    /// Write a charter file (prints the alliance id), or show one
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Charter {
        #[command(subcommand)]
        show: Option<CharterCommand>,
        #[command(flatten)]
        build: CharterBuild,
    },
    /// Operator tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// TLS certificates for nodes (ECDSA P-256, self-signed, pinned by fingerprint)
    #[command(subcommand)]
    Tls(TlsCommand),
    /// A node's store, read directly (the node must be stopped)
    #[command(subcommand)]
    Store(StoreCommand),
    /// Run a node until SIGINT or SIGTERM; prints "listening on ADDRESS" (and "http on
    /// ADDRESS" with an [http] section) once the store is open and the node serves.
    /// Under systemd (Type=notify, NOTIFY_SOCKET) it sends READY=1 then, and
    /// STOPPING=1 when a signal stops it (within 8 s, whatever the node is doing).
    /// Logs go to stderr, filtered by RUST_LOG
    /// (default info). SIGHUP reads the config again and applies its [[peers]] and
    /// [[operators]] without a restart (other settings need one)
    Node {
        /// Log format: `human` (lines for a terminal or the journal) or `json` (one
        /// object per line: timestamp, level, target, message and the event's fields,
        /// for log shippers)
        #[arg(long, value_enum, default_value_t = LogFormat::Human, value_name = "FORMAT")]
        log_format: LogFormat,
        /// Node config file (TOML, see the node's documentation)
        #[arg(long, value_name = "NODE.toml")]
        config: PathBuf,
        /// Rebuild the store from the peers: move the data directory aside (to
        /// DATA_DIR.damaged-TIME), start from an empty one that keeps the record of
        /// what this node signed and the manifest of heads, and pull everything
        /// again. The node refuses to publish as its organisations until its store
        /// holds their logs up to that record, and its health fails until every log
        /// is back. Stop the node first
        #[arg(long)]
        rebuild: bool,
    },
    /// Ask the node that NODE.toml describes, on this machine, whether it serves (gRPC
    /// health: its storage works and no log is short of what its store should hold):
    /// exits 0 and prints "serving", else exits 1 saying what it answered. For
    /// container HEALTHCHECKs and monitoring; needs no token
    Healthcheck {
        /// The node's config file (TOML); its listen address and TLS certificate are used
        #[arg(long, value_name = "NODE.toml")]
        config: PathBuf,
        /// Where to reach the node, when not at the config's listen address (which
        /// may name port 0 or every address)
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<std::net::SocketAddr>,
    },
    /// Show a node's status: alliance, entries and their digest (compare nodes by it),
    /// the state digest with its rules version, storage (free space, or why it
    /// failed), the clock against the peers', heads, frozen logs, entries the store
    /// lost, entries set aside (stored and relayed, but a kind or body this release
    /// does not accept) and peers (connected or not answering, last contact, behind,
    /// received, refused, held and refused entries, last error)
    Status(ListArgs),
    /// Declare an organisation's intention on a ballot
    #[command(subcommand)]
    Intention(IntentionCommand),
    /// List current intentions
    Intentions {
        #[command(flatten)]
        list: ListArgs,
        /// Only this ballot id
        #[arg(long)]
        ballot: Option<String>,
        /// Only this election id (e.g. local.2027-05-06 or local.leeds.2027-05-06)
        #[arg(long)]
        election: Option<String>,
        /// Only this organisation (charter name or hex key)
        #[arg(long, value_name = "NAME|HEX")]
        org: Option<String>,
    },
    /// List standing clashes, soonest close of nominations first; `clashes watch` follows them
    #[command(args_conflicts_with_subcommands = true)]
    Clashes {
        #[command(subcommand)]
        watch: Option<ClashesCommand>,
        #[command(flatten)]
        filter: ClashFilter,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Record a secretary's resolution of a clash: who stands, who stands aside
    Resolve {
        #[command(flatten)]
        publish: PublishArgs,
        /// Ballot id
        #[arg(long)]
        ballot: String,
        /// Organisation that stands (repeat for several)
        #[arg(long, value_name = "NAME|HEX")]
        stands: Vec<String>,
        /// Organisation that stands aside (repeat for several)
        #[arg(long, value_name = "NAME|HEX", required = true)]
        stand_aside: Vec<String>,
        /// Why
        #[arg(long)]
        rationale: String,
    },
    /// List resolutions and whether they are honoured
    Resolutions(ListArgs),
    /// Publish, endorse or withdraw statements
    #[command(subcommand)]
    Statement(StatementCommand),
    /// List statements with their co-signatories and endorsements
    Statements(ListArgs),
    /// Publish or cancel events
    #[command(subcommand)]
    Event(EventCommand),
    /// List events (live ones unless --include-cancelled)
    Events {
        #[command(flatten)]
        list: ListArgs,
        /// Only events ending after this time (RFC 3339, e.g. 2027-04-12T00:00:00Z)
        #[arg(long)]
        from: Option<String>,
        /// Only events starting before this time (RFC 3339)
        #[arg(long)]
        to: Option<String>,
        /// Also list cancelled events
        #[arg(long)]
        include_cancelled: bool,
    },
    /// List pairs of live events that overlap at the same venue or area
    EventClashes(ListArgs),
    /// Members' calendar links: a private address per member that shows the
    /// alliance's members-only events and the clash board (the node needs [http])
    #[command(subcommand)]
    Feed(FeedCommand),
    /// Show an author's log, entry by entry
    Log {
        #[command(flatten)]
        list: ListArgs,
        /// The author (charter name or hex key)
        #[arg(long, value_name = "NAME|HEX")]
        author: String,
        /// First seq to show
        #[arg(long, default_value_t = 1)]
        from_seq: u64,
        /// At most this many entries (fetched a page at a time)
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// Submit an entry signed elsewhere (a SignedEntry protobuf, raw bytes)
    Submit {
        #[command(flatten)]
        client: ClientArgs,
        /// File holding the encoded SignedEntry
        file: PathBuf,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Take a consistent backup of a running node through its API, or check one
    /// (`backup verify FILE`)
    #[command(
        args_conflicts_with_subcommands = true,
        subcommand_negates_reqs = true,
        long_about = "Take a consistent backup of a running node through its gRPC API (any \
            operator token): the charter, a manifest of every log's head with the entries \
            digest and state digest, the fork proofs and every entry exactly as signed, all \
            from one snapshot of the ledger, with a SHA-256 checksum. The file is written \
            beside FILE, verified in full (as `backup verify` does), then renamed to FILE \
            (mode 0600; an existing FILE is replaced only by a verified backup).\n\n\
            `accord backup verify FILE` checks a backup offline and exits 1 on any damage; \
            `accord restore FILE --config NODE.toml` fills an empty data directory from one."
    )]
    Backup {
        #[command(subcommand)]
        verify: Option<BackupCommand>,
        #[command(flatten)]
        client: ClientArgs,
        /// File to write the backup to
        #[arg(long, value_name = "FILE", required = true)]
        out: Option<PathBuf>,
    },
    /// Fill an empty data directory from a backup, after verifying it in full
    #[command(
        long_about = "Fill a node's data directory from a backup file, after verifying \
        every signature, log link and fork proof in it and its checksum. The node must be \
        stopped and its data directory missing or empty; it may hold only signed-heads.a and \
        signed-heads.b, the record of what the node signed, kept from the directory it \
        replaces (keep them: the node then refuses to publish as its organisations until its \
        peers have supplied anything it signed after the backup). The backup must be of the \
        alliance of the node's charter. Restore raises the record of signed seqs to the \
        backup's heads of the node's home identities (it never lowers it). If it fails, \
        it leaves the directory as it found it. Then start the node as usual."
    )]
    Restore {
        /// The backup file
        file: PathBuf,
        /// The node's config file (its data_dir, charter and home identities)
        #[arg(long, value_name = "NODE.toml")]
        config: PathBuf,
    },
    /// Export every entry, one JSON object per line, verifiable with any Ed25519 library
    #[command(
        long_about = "Export every entry of a node's ledger (from one snapshot, as a \
        backup is taken), or of a backup file (--from-backup), one JSON object per line in \
        (author, seq) order: id, author (the charter name), key (the author's Ed25519 public \
        key, hex), seq, prev (hex, empty for seq 1), timestamp_ms, kind, body (the decoded \
        body as JSON, null if this release cannot read it, with body_error saying why), \
        entry (base64 of the exact bytes the signature covers: the 16 bytes \
        \"accord/v1/entry\\0\" then the encoded Entry protobuf) and signature (base64, \
        Ed25519). id is the hex SHA-256 of \"accord/v1/entry-id\\0\" followed by the \
        encoded Entry (entry without its first 16 bytes), and prev is the id of the \
        author's entry seq-1."
    )]
    Export {
        #[command(flatten)]
        client: ClientArgs,
        /// Output format (one: jsonl)
        #[arg(long, default_value = "jsonl")]
        format: ExportFormat,
        /// Write to this file instead of standard output
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Export a backup file instead of asking a node (the backup is checked
        /// against its checksum, not verified in full: see `backup verify`)
        #[arg(long, value_name = "FILE")]
        from_backup: Option<PathBuf>,
    },
    /// Show the roster: the organisations (charter plus governance entries), their
    /// roles and standing, the quorum rule and the roster version
    Roster(ListArgs),
    /// List proposals to change the roster, newest first, with their approvals and fate
    Proposals {
        #[command(flatten)]
        list: ListArgs,
        /// Only open proposals
        #[arg(long)]
        open: bool,
    },
    /// Propose a change to the roster (as a member or secretary); it takes effect once
    /// approvals reach the quorum, and lapses after 14 days. --json prints its `id`
    #[command(subcommand)]
    Propose(ProposeCommand),
    /// Approve a proposal (as a member): its id, or a unique prefix of at least 8 hex
    /// digits
    Approve {
        #[command(flatten)]
        publish: PublishArgs,
        /// Proposal id
        id: String,
    },
    /// Object to a proposal (as a member); under lazy consensus an objection stops it
    /// passing by time
    Object {
        #[command(flatten)]
        publish: PublishArgs,
        /// Proposal id
        id: String,
        /// Why
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Leave the alliance (no quorum needed): your log counts up to this entry, and
    /// nothing later counts. Refused if it would leave no secretary or fewer than two
    /// members
    Leave {
        #[command(flatten)]
        publish: PublishArgs,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Announce your organisation's node in the roster (no quorum needed): its address
    /// and TLS certificate fingerprint, which every node then pins and dials. By
    /// default the node's `advertise` address and the certificate it runs with; to
    /// rotate the certificate, announce the new one's fingerprint, then restart the
    /// node with it
    Announce {
        #[command(flatten)]
        publish: PublishArgs,
        /// host:port where peers reach the node (default: its `advertise`)
        #[arg(long, value_name = "HOST:PORT")]
        address: Option<String>,
        /// SHA-256 of the certificate, 64 hex digits (`accord tls show NEW.crt`);
        /// default: the certificate the node runs with
        #[arg(long, value_name = "HEX")]
        cert_sha256: Option<String>,
    },
    /// Write an invitation file for a new organisation (as a member or secretary): the
    /// charter, the roster's version and this node's address and certificate
    Invite {
        #[command(flatten)]
        client: ClientArgs,
        /// The invitation file to write (JSON)
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite FILE if it exists
        #[arg(long)]
        force: bool,
        /// Print what was written as JSON
        #[arg(long)]
        json: bool,
    },
    /// Join an alliance from an invitation: makes DIR with a new signing key, TLS
    /// certificate, operator token, the charter, node.toml (the inviting node as its
    /// peer) and client.toml, and prints the key to be admitted and the exact
    /// `accord propose admit` command for the alliance
    Join {
        /// The invitation file (`accord invite`)
        #[arg(long, value_name = "FILE")]
        invitation: PathBuf,
        /// The new node's folder (must not hold a node.toml)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The organisation's name (default: DIR's name)
        #[arg(long)]
        name: Option<String>,
        /// Address the node listens on
        #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7400")]
        listen: std::net::SocketAddr,
        /// host:port where peers reach the node (default: --listen, unless it is
        /// 0.0.0.0 or [::])
        #[arg(long, value_name = "HOST:PORT")]
        advertise: Option<String>,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
    /// Run a demo alliance in DIR until interrupted: four nodes, one per organisation,
    /// federated over TLS in this process (created on first use, then reused)
    #[command(
        long_about = "Create (or reuse) a demo alliance in DIR and run it until interrupted \
            (Ctrl-C or SIGTERM stops every node cleanly).\n\n\
            Four nodes run in this process: one for each member organisation (Breakthrough \
            Party, Northern Green Left, Radical Socialist Alliance) and one for the PAL \
            Secretariat. Each has its own data, TLS certificate (ECDSA P-256, self-signed), \
            operator token and port, and pulls from the other three over mutual TLS with \
            pinned certificates. Each organisation publishes the sample data through its own \
            node; once every node holds the same ledger, DIR/demo.json lists the nodes \
            (address, certificate fingerprint, client config, token file, data folder) and \
            the organisations, and a summary is printed.\n\n\
            DIR/nodes/NAME/client.toml reaches node NAME as its organisation: for example \
            `accord --config DIR/nodes/northern-green-left/client.toml clashes`.\n\n\
            Run again on the same DIR to reuse the keys, certificates and ledgers (the \
            sample data is only published into an empty ledger)."
    )]
    Demo {
        /// Folder for the charter, keys, nodes (configs, tokens, certificates, data) and
        /// demo.json
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Address of the first node; the other three take the next ports (port 0: ports
        /// the OS picks). Default: the previous run's ports if they are free, else
        /// 127.0.0.1:7400 to 7403
        #[arg(long, value_name = "ADDRESS")]
        listen: Option<std::net::SocketAddr>,
        /// Write the files for deploy/compose.yaml (one container per organisation)
        /// under DIR/compose instead of running the nodes here; --listen then gives
        /// the host address and first of the four ports compose publishes
        #[arg(long)]
        compose: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Check a backup file offline: its checksum, every signature, log link and fork
    /// proof, and its manifest; exits 1 on any damage
    Verify {
        /// The backup file
        file: PathBuf,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the public id (hex) of a key file
    Show {
        /// PKCS#8 PEM key file
        file: PathBuf,
    },
    /// Rotate a home identity's key on its node: the node makes a new key, keeps it
    /// beside the key file, signs the rotation with the old key and signs as the new
    /// key from then on (same organisation, same log). --json prints the rotation's
    /// `id`, `seq`, the new `key` and the `retired_key`
    #[command(
        long_about = "Rotate a home identity's key on its node (the RotateKey call).\n\n\
            The node makes a new key and writes it to KEYFILE.next (synced) before anything \
            names it, signs a key-rotation entry with the current key, and once that is \
            durable keeps the old key as KEYFILE.retired-SEQ and moves the new key into \
            KEYFILE, which its config already names. The organisation keeps its identity \
            (its first key) and its log: the next entry is SEQ+1, signed by the new key, \
            and every node refuses anything the old key signs after SEQ. See deploy/README.md, \
            \"Key rotation\"."
    )]
    Rotate {
        #[command(flatten)]
        publish: PublishArgs,
    },
}

#[derive(Debug, Args)]
pub struct CharterBuild {
    /// Alliance name
    #[arg(long, required = true)]
    pub name: Option<String>,
    /// Member organisation: NAME=KEY or NAME=KEY=EC_ID, where KEY is a public key in hex
    /// or a key file (repeat for each member)
    #[arg(long, value_name = "NAME=KEY[=EC_ID]", required = true)]
    pub member: Vec<String>,
    /// Alliance secretary: NAME=KEY (repeat for several)
    #[arg(long, value_name = "NAME=KEY")]
    pub secretary: Vec<String>,
    /// File to write the charter to
    #[arg(long, value_name = "FILE", required = true)]
    pub out: Option<PathBuf>,
    /// Overwrite the file if it exists
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum CharterCommand {
    /// Show a charter file: alliance id, members and secretaries
    Show {
        /// Charter file
        file: PathBuf,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Write a new random operator token (mode 0600); prints its SHA-256 for the node
    /// config's token_sha256
    New {
        /// File to write the token to
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Overwrite the file if it exists
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Re-verify every entry in a stopped node's store (signatures, envelopes, log
    /// links, fork proofs) and say what a node started on it would do (start, start
    /// and refill lost entries from its peers, or refuse it), each log's count and
    /// how far it is whole, and every damage found; exits 1 unless the store is
    /// sound. It writes nothing to the store: it works on a copy in a scratch
    /// directory, deleted after
    Check {
        /// The node's config file (its data_dir, charter and identities are used)
        #[arg(long, value_name = "NODE.toml")]
        config: PathBuf,
        /// Print the report as one JSON object (also when the check fails)
        #[arg(long)]
        json: bool,
        /// Where to copy the store for the check (default: the system's temporary
        /// directory); needs room for the store's files
        #[arg(long, value_name = "DIR")]
        scratch: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write a new self-signed certificate and key (mode 0600) for a node's [tls]
    /// section; prints the certificate's SHA-256 fingerprint for peers' and clients'
    /// cert_sha256
    New {
        /// Certificate file to write (PEM)
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// Private key file to write (PEM)
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// DNS name or IP address the node is reached by (repeat for several; the pin,
        /// not the name, is what clients check)
        #[arg(long = "name", value_name = "NAME", default_values_t = ["localhost".to_owned()])]
        names: Vec<String>,
        /// Overwrite the files if they exist
        #[arg(long)]
        force: bool,
    },
    /// Print the SHA-256 fingerprint of a certificate file
    Show {
        /// Certificate file (PEM)
        cert: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    Considering,
    Intends,
    Confirmed,
    Withdrawn,
    StoodAside,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Visibility {
    Alliance,
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClashState {
    Open,
    Potential,
    Pending,
    Resolved,
    Breached,
}

#[derive(Debug, Subcommand)]
pub enum IntentionCommand {
    /// Declare (or update) the position on one ballot
    Declare {
        #[command(flatten)]
        publish: PublishArgs,
        /// Democracy Club ballot id, e.g. local.leeds.headingley-hyde-park.2027-05-06
        #[arg(long)]
        ballot: String,
        /// The position
        #[arg(long)]
        status: Status,
        /// Candidate name (required with confirmed)
        #[arg(long)]
        candidate: Option<String>,
        /// Who may see it (default alliance)
        #[arg(long)]
        visibility: Option<Visibility>,
        /// ONS GSS code of the area, e.g. E05011412
        #[arg(long)]
        area: Option<String>,
        /// A note for the alliance
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ClashFilter {
    /// Only clashes in this state (repeat for several)
    #[arg(long)]
    pub state: Vec<ClashState>,
    /// Only this election id (e.g. local.2027-05-06)
    #[arg(long)]
    pub election: Option<String>,
    /// Only clashes involving this organisation (charter name or hex key)
    #[arg(long, value_name = "NAME|HEX")]
    pub org: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClashesCommand {
    /// Print the clash list now and again each time it changes, until interrupted
    Watch {
        #[command(flatten)]
        filter: ClashFilter,
        #[command(flatten)]
        list: ListArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum StatementCommand {
    /// Publish a statement, optionally asking other organisations to co-sign it
    Publish {
        #[command(flatten)]
        publish: PublishArgs,
        /// Title
        #[arg(long)]
        title: String,
        /// Text
        #[arg(long)]
        text: String,
        /// Organisation asked to co-sign (repeat for several)
        #[arg(long, value_name = "NAME|HEX")]
        cosigner: Vec<String>,
    },
    /// Endorse a statement (as a co-signatory or a supporter)
    Endorse {
        #[command(flatten)]
        publish: PublishArgs,
        /// Statement id in hex (a unique prefix is enough)
        id: String,
    },
    /// Withdraw one of your statements
    Withdraw {
        #[command(flatten)]
        publish: PublishArgs,
        /// Statement id in hex (a unique prefix is enough)
        id: String,
        /// Why
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Publish an event, or update one by publishing its uid again
    Publish {
        #[command(flatten)]
        publish: PublishArgs,
        #[command(flatten)]
        event: EventFields,
    },
    /// Cancel one of your events (republishes it with cancelled set)
    Cancel {
        #[command(flatten)]
        publish: PublishArgs,
        /// The event's uid
        #[arg(long)]
        uid: String,
    },
}

#[derive(Debug, Args)]
pub struct EventFields {
    /// Stable id, unique among your events
    #[arg(long)]
    pub uid: String,
    /// Title
    #[arg(long)]
    pub title: String,
    /// Local start time, YYYY-MM-DDTHH:MM[:SS], in --time-zone (with --all-day, the
    /// first day, YYYY-MM-DD)
    #[arg(long)]
    pub start: String,
    /// Local end time, YYYY-MM-DDTHH:MM[:SS], in --time-zone (with --all-day, the
    /// last day, YYYY-MM-DD, inclusive; default the first day)
    #[arg(long, required_unless_present = "all_day")]
    pub end: Option<String>,
    /// An all-day event: --start and --end are dates, not times
    #[arg(long)]
    pub all_day: bool,
    /// IANA time zone (default Europe/London)
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Venue
    #[arg(long)]
    pub venue: Option<String>,
    /// ONS GSS code of the area
    #[arg(long)]
    pub area: Option<String>,
    /// Organising organisation besides the author (repeat for several)
    #[arg(long, value_name = "NAME|HEX")]
    pub organiser: Vec<String>,
    /// Who may see it (default alliance)
    #[arg(long)]
    pub visibility: Option<Visibility>,
    /// Description
    #[arg(long)]
    pub description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

#[derive(Debug, Subcommand)]
pub enum FeedCommand {
    /// Make a member's link and print its addresses (webcal://, https:// and the page)
    Link {
        #[command(flatten)]
        list: ListArgs,
        /// Whom the link is for, e.g. "Jo Bloggs (Leeds branch)"; unique among live links
        label: String,
    },
    /// Revoke a link by its id (or the first 6+ digits of it) or its label; its
    /// addresses answer 404 from then on
    Revoke {
        #[command(flatten)]
        list: ListArgs,
        /// The link's id or label
        link: String,
    },
    /// List links, live and revoked (tokens are not shown: the node keeps only hashes)
    List(ListArgs),
}

/// How `accord node` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}
