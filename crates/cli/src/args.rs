//! The command line grammar (clap derive) with Docker's command, flag and short-flag names.

use clap::{ArgAction, Args, Parser, Subcommand};

/// `berth [OPTIONS] COMMAND`.
#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "A self-sufficient runtime for containers (Docker-compatible)",
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Cmd,
}

/// The options before the command.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Location of client config files (default $DOCKER_CONFIG or ~/.docker)
    #[arg(long, value_name = "DIR")]
    pub config: Option<String>,
    /// Daemon socket to connect to (unix:///path)
    #[arg(short = 'H', long)]
    pub host: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long)]
    pub debug: bool,
    /// Set the logging level
    #[arg(short = 'l', long = "log-level")]
    pub log_level: Option<String>,
}

impl Cli {
    /// Parses a command line (`args[0]` is the program).
    ///
    /// clap builds every subcommand's arguments whenever it builds the whole tree: about 1 ms of
    /// each command's start-up on a small VM, more than any of these commands then waits on
    /// berthd. So the commands that scripts run in loops are first parsed against a tree that
    /// holds only their own subcommand, with the same argument definitions. Whatever that
    /// parse does not accept (help, a bad flag, a misspelled command, an unusual global
    /// option) goes through the whole tree, so every message and suggestion is clap's own.
    pub fn parse_args(args: &[String]) -> Result<Self, clap::Error> {
        if let Some(cli) = Self::parse_hot(args) {
            return Ok(cli);
        }
        Self::try_parse_from(args)
    }

    fn parse_hot(args: &[String]) -> Option<Self> {
        use clap::FromArgMatches;
        let sub = hot_subcommand(args.get(command_index(args)?)?)?;
        let top = GlobalOpts::augment_args(clap::Command::new("berth")).subcommand(sub);
        let matches = top.try_get_matches_from(args).ok()?;
        Self::from_arg_matches(&matches).ok()
    }
}

/// Where the command is in `args`, after the global options; `None` for anything unusual.
fn command_index(args: &[String]) -> Option<usize> {
    let mut i = 1;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-H" | "--host" | "--config" | "-l" | "--log-level" => i += 2,
            "-D" | "--debug" => i += 1,
            a if ["--host=", "--config=", "--log-level="]
                .iter()
                .any(|p| a.starts_with(p)) =>
            {
                i += 1
            }
            a if a.starts_with('-') => return None,
            _ => return Some(i),
        }
    }
    None
}

/// The subcommands [`Cli::parse_args`] parses alone: each as `Cmd`'s derive builds it (a plain
/// variant, no command attributes; its help text does not matter, help goes the long way).
fn hot_subcommand(name: &str) -> Option<clap::Command> {
    use clap::Command as C;
    Some(match name {
        "run" => RunArgs::augment_args(C::new("run")),
        "create" => CreateArgs::augment_args(C::new("create")),
        "start" => StartArgs::augment_args(C::new("start")),
        "stop" => StopArgs::augment_args(C::new("stop")),
        "restart" => StopArgs::augment_args(C::new("restart")),
        "kill" => KillArgs::augment_args(C::new("kill")),
        "rm" => RmArgs::augment_args(C::new("rm")),
        "ps" => PsArgs::augment_args(C::new("ps")),
        "logs" => LogsArgs::augment_args(C::new("logs")),
        "exec" => ExecArgs::augment_args(C::new("exec")),
        "inspect" => InspectArgs::augment_args(C::new("inspect")),
        "wait" => NamesArgs::augment_args(C::new("wait")),
        _ => return None,
    })
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create and run a new container from an image
    Run(RunArgs),
    /// Create a new container
    Create(CreateArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(AttachArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Return low-level information on Docker objects
    Inspect(InspectArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(CpArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(ContainerArg),
    /// List port mappings or a specific mapping for the container
    Port(PortArgs),
    /// Export a container's filesystem as a tar archive
    Export(ExportArgs),
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// Remove unused images (`image prune`)
    #[command(hide = true)]
    ImagePrune(SystemPruneArgs),
    /// Remove all stopped containers (`container prune`)
    #[command(hide = true)]
    ContainerPrune(PruneArgs),
    /// Pause all processes within one or more containers
    Pause(NamesArgs),
    /// Unpause all processes within one or more containers
    Unpause(NamesArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Create a new image from a container's changes
    Commit(CommitArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    /// Manage builds
    #[command(subcommand)]
    Builder(BuilderCmd),
    /// List images
    Images(ImagesArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Search a registry for images
    Search(SearchArgs),
    /// Authenticate to a registry
    Login(LoginArgs),
    /// Log out from a registry
    Logout(LogoutArgs),
    /// Show the Berth version information
    Version(FormatArgs),
    /// Display system-wide information
    Info(FormatArgs),
    /// Get real time events from the server
    Events(EventsArgs),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage images
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage volumes
    #[command(subcommand)]
    Volume(VolumeCmd),
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Manage Berth
    #[command(subcommand)]
    System(SystemCmd),
}

/// `berth network <sub>`.
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network
    Create(NetworkCreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(NetworkLsArgs),
    /// Display detailed information on one or more networks
    Inspect(NetworkInspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(NetworkRmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(NetworkConnectArgs),
    /// Disconnect a container from a network
    Disconnect(NetworkDisconnectArgs),
}

/// `network create [OPTIONS] NETWORK`.
#[derive(Debug, Clone, Args)]
pub struct NetworkCreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    pub ip_range: Vec<String>,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver
    #[arg(long = "aux-address")]
    pub aux_address: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Enable or disable IPv6 networking
    #[arg(long)]
    pub ipv6: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    #[arg(value_name = "NETWORK")]
    pub name: String,
}

/// `network ls [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct NetworkLsArgs {
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display network IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `network inspect [OPTIONS] NETWORK [NETWORK...]`.
#[derive(Debug, Clone, Args)]
pub struct NetworkInspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

/// `network rm NETWORK [NETWORK...]`.
#[derive(Debug, Clone, Args)]
pub struct NetworkRmArgs {
    /// Do not error if the network does not exist
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true, value_name = "NETWORK")]
    pub networks: Vec<String>,
}

/// `network connect [OPTIONS] NETWORK CONTAINER`.
#[derive(Debug, Clone, Args)]
pub struct NetworkConnectArgs {
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long)]
    pub alias: Vec<String>,
    #[arg(value_name = "NETWORK")]
    pub network: String,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `network disconnect [OPTIONS] NETWORK CONTAINER`.
#[derive(Debug, Clone, Args)]
pub struct NetworkDisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(value_name = "NETWORK")]
    pub network: String,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `berth volume <sub>`.
#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(visible_alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more volumes
    Inspect(VolumeInspectArgs),
    /// Remove one or more volumes
    #[command(visible_alias = "remove")]
    Rm(VolumeRmArgs),
    /// Remove unused local volumes
    Prune(VolumePruneArgs),
}

/// `volume create [OPTIONS] [VOLUME]`.
#[derive(Debug, Clone, Args)]
pub struct VolumeCreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Specify volume name
    #[arg(long)]
    pub name: Option<String>,
    #[arg(value_name = "VOLUME")]
    pub volume: Option<String>,
}

/// `volume ls [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct VolumeLsArgs {
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `volume inspect [OPTIONS] VOLUME [VOLUME...]`.
#[derive(Debug, Clone, Args)]
pub struct VolumeInspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

/// `volume rm [OPTIONS] VOLUME [VOLUME...]`.
#[derive(Debug, Clone, Args)]
pub struct VolumeRmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
}

/// `volume prune [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct VolumePruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<label>")
    #[arg(long)]
    pub filter: Vec<String>,
}

/// `events [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Filter output based on conditions provided
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
}

/// `berth system <sub>`.
#[derive(Debug, Subcommand)]
pub enum SystemCmd {
    /// Get real time events from the server
    Events(EventsArgs),
    /// Remove unused data
    Prune(SystemPruneArgs),
    /// Show docker disk usage
    Df(FormatArgs),
    /// Display system-wide information
    Info(FormatArgs),
}

/// `berth container <sub>`.
#[derive(Debug, Subcommand)]
pub enum ContainerCmd {
    /// List containers
    #[command(visible_aliases = ["ps", "list"])]
    Ls(PsArgs),
    Run(RunArgs),
    Create(CreateArgs),
    Start(StartArgs),
    Stop(StopArgs),
    Kill(KillArgs),
    Restart(StopArgs),
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    Logs(LogsArgs),
    Attach(AttachArgs),
    Exec(ExecArgs),
    Inspect(TypedInspectArgs),
    Wait(NamesArgs),
    Top(TopArgs),
    Stats(StatsArgs),
    Cp(CpArgs),
    Diff(ContainerArg),
    Export(ExportArgs),
    Port(PortArgs),
    /// Remove all stopped containers
    Prune(PruneArgs),
    Update(UpdateArgs),
    Pause(NamesArgs),
    Unpause(NamesArgs),
    Rename(RenameArgs),
    Commit(CommitArgs),
}

/// `berth image <sub>`.
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// List images
    #[command(visible_alias = "list")]
    Ls(ImagesArgs),
    /// Remove one or more images
    #[command(visible_alias = "remove")]
    Rm(RmiArgs),
    /// Display detailed information on one or more images
    Inspect(TypedInspectArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(TagArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Remove unused images
    Prune(SystemPruneArgs),
    /// Save one or more images to a tar archive
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(LoadArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Download an image from a registry
    Pull(PullArgs),
    /// Upload an image to a registry
    Push(PushArgs),
    /// Build an image from a Dockerfile
    Build(BuildArgs),
}

impl ContainerCmd {
    /// The equivalent top-level command.
    pub fn into_cmd(self) -> Cmd {
        match self {
            ContainerCmd::Ls(a) => Cmd::Ps(a),
            ContainerCmd::Run(a) => Cmd::Run(a),
            ContainerCmd::Create(a) => Cmd::Create(a),
            ContainerCmd::Start(a) => Cmd::Start(a),
            ContainerCmd::Stop(a) => Cmd::Stop(a),
            ContainerCmd::Kill(a) => Cmd::Kill(a),
            ContainerCmd::Restart(a) => Cmd::Restart(a),
            ContainerCmd::Rm(a) => Cmd::Rm(a),
            ContainerCmd::Logs(a) => Cmd::Logs(a),
            ContainerCmd::Attach(a) => Cmd::Attach(a),
            ContainerCmd::Exec(a) => Cmd::Exec(a),
            ContainerCmd::Inspect(a) => Cmd::Inspect(a.with_type("container")),
            ContainerCmd::Wait(a) => Cmd::Wait(a),
            ContainerCmd::Top(a) => Cmd::Top(a),
            ContainerCmd::Stats(a) => Cmd::Stats(a),
            ContainerCmd::Cp(a) => Cmd::Cp(a),
            ContainerCmd::Diff(a) => Cmd::Diff(a),
            ContainerCmd::Port(a) => Cmd::Port(a),
            ContainerCmd::Export(a) => Cmd::Export(a),
            ContainerCmd::Commit(a) => Cmd::Commit(a),
            ContainerCmd::Prune(a) => Cmd::ContainerPrune(a),
            ContainerCmd::Update(a) => Cmd::Update(a),
            ContainerCmd::Pause(a) => Cmd::Pause(a),
            ContainerCmd::Unpause(a) => Cmd::Unpause(a),
            ContainerCmd::Rename(a) => Cmd::Rename(a),
        }
    }
}

impl ImageCmd {
    /// The equivalent top-level command.
    pub fn into_cmd(self) -> Cmd {
        match self {
            ImageCmd::Ls(a) => Cmd::Images(a),
            ImageCmd::Rm(a) => Cmd::Rmi(a),
            ImageCmd::Inspect(a) => Cmd::Inspect(a.with_type("image")),
            ImageCmd::Tag(a) => Cmd::Tag(a),
            ImageCmd::Import(a) => Cmd::Import(a),
            ImageCmd::Prune(a) => Cmd::ImagePrune(a),
            ImageCmd::Save(a) => Cmd::Save(a),
            ImageCmd::Load(a) => Cmd::Load(a),
            ImageCmd::History(a) => Cmd::History(a),
            ImageCmd::Pull(a) => Cmd::Pull(a),
            ImageCmd::Push(a) => Cmd::Push(a),
            ImageCmd::Build(a) => Cmd::Build(a),
        }
    }
}

/// Flags shared by `run` and `create` (everything that shapes the container).
#[derive(Debug, Clone, Default, Args)]
pub struct ContainerOpts {
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long, allow_hyphen_values = true)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Restart policy to apply when a container exits
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Connect a container to a network
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Security Options
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Tune container memory swappiness (0 to 100)
    #[arg(long = "memory-swappiness", allow_hyphen_values = true)]
    pub memory_swappiness: Option<i64>,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Ulimit options
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// Sysctl options
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Add a host device to the container
    #[arg(long)]
    pub device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list
    #[arg(long = "device-cgroup-rule")]
    pub device_cgroup_rule: Vec<String>,
    /// Limit read rate (bytes per second) from a device
    #[arg(long = "device-read-bps")]
    pub device_read_bps: Vec<String>,
    /// Limit write rate (bytes per second) to a device
    #[arg(long = "device-write-bps")]
    pub device_write_bps: Vec<String>,
    /// Limit read rate (IO per second) from a device
    #[arg(long = "device-read-iops")]
    pub device_read_iops: Vec<String>,
    /// Limit write rate (IO per second) to a device
    #[arg(long = "device-write-iops")]
    pub device_write_iops: Vec<String>,
    /// Block IO weight (relative device weight)
    #[arg(long = "blkio-weight-device")]
    pub blkio_weight_device: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Runtime to use for this container
    #[arg(long)]
    pub runtime: Option<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval")]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout")]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries")]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period")]
    pub health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    /// Logging driver for the container
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(long = "oom-score-adj", allow_hyphen_values = true)]
    pub oom_score_adj: Option<i64>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Bind mount a volume
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Attach a filesystem mount to the container
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from")]
    pub volumes_from: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    pub ip6: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// IPC mode to use
    #[arg(long)]
    pub ipc: Option<String>,
    /// PID namespace to use
    #[arg(long)]
    pub pid: Option<String>,
    /// UTS namespace to use
    #[arg(long)]
    pub uts: Option<String>,
    /// User namespace to use
    #[arg(long)]
    pub userns: Option<String>,
    /// Cgroup namespace to use (host|private)
    #[arg(long)]
    pub cgroupns: Option<String>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent")]
    pub cgroup_parent: Option<String>,
    /// Write the container ID to the file
    #[arg(long)]
    pub cidfile: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Container MAC address
    #[arg(long = "mac-address")]
    pub mac_address: Option<String>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long = "attach")]
    pub attach: Vec<String>,
    /// Show help
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
}

/// `run [OPTIONS] IMAGE [COMMAND] [ARG...]`.
#[derive(Debug, Clone, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Proxy received signals to the process
    #[arg(long = "sig-proxy", num_args = 0..=1, default_value = "true", default_missing_value = "true", require_equals = true)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[command(flatten)]
    pub opts: ContainerOpts,
    /// The image to run
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// The command and its arguments
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `create [OPTIONS] IMAGE [COMMAND] [ARG...]`.
#[derive(Debug, Clone, Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    #[command(flatten)]
    pub opts: ContainerOpts,
    #[arg(value_name = "IMAGE")]
    pub image: String,
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `start [OPTIONS] CONTAINER [CONTAINER...]`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `stop`/`restart [OPTIONS] CONTAINER [CONTAINER...]`.
#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "time",
        alias = "timeout",
        allow_hyphen_values = true
    )]
    pub time: Option<i64>,
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `kill [OPTIONS] CONTAINER [CONTAINER...]`.
#[derive(Debug, Clone, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `rm [OPTIONS] CONTAINER [CONTAINER...]`.
#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Remove the specified link
    #[arg(short = 'l', long)]
    pub link: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// `ps [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long, default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
}

/// `cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-` or `cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH`.
#[derive(Debug, Clone, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    pub quiet: bool,
    pub src: String,
    pub dest: String,
}

/// `stats [OPTIONS] [CONTAINER...]`.
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub containers: Vec<String>,
}

/// `logs [OPTIONS] CONTAINER`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show logs since timestamp or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub until: Option<String>,
    /// Show extra details provided to logs
    #[arg(long)]
    pub details: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `attach [OPTIONS] CONTAINER`.
#[derive(Debug, Clone, Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process
    #[arg(long = "sig-proxy", num_args = 0..=1, default_value = "true", default_missing_value = "true", require_equals = true)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `exec [OPTIONS] CONTAINER COMMAND [ARG...]`.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(
        value_name = "COMMAND",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `inspect [OPTIONS] NAME|ID [NAME|ID...]`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Return JSON for specified type
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Display total file sizes if the type is container
    #[arg(short = 's', long)]
    pub size: bool,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

/// `container inspect`/`image inspect` (no `--type`).
#[derive(Debug, Clone, Args)]
pub struct TypedInspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

impl TypedInspectArgs {
    fn with_type(self, kind: &str) -> InspectArgs {
        InspectArgs {
            format: self.format,
            kind: Some(kind.to_owned()),
            size: self.size,
            names: self.names,
        }
    }
}

/// Commands taking only container names.
#[derive(Debug, Clone, Args)]
pub struct NamesArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

/// A command taking one container.
#[derive(Debug, Clone, Args)]
pub struct ContainerArg {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// Resource limits, as `run`, `create` and `update` take them.
#[derive(Debug, Clone, Default, Args)]
pub struct ResourceFlags {
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<i64>,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
}

/// `update [OPTIONS] CONTAINER [CONTAINER...]`.
#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub resources: ResourceFlags,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(value_name = "CONTAINER", required = true)]
    pub containers: Vec<String>,
}

/// `system prune` / `image prune`.
#[derive(Debug, Clone, Args)]
pub struct SystemPruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Prune anonymous volumes (`system prune`)
    #[arg(long)]
    pub volumes: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "label=<key>=<value>")
    #[arg(long)]
    pub filter: Vec<String>,
}

/// `container prune [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    pub filter: Vec<String>,
}

/// `port CONTAINER [PRIVATE_PORT[/PROTO]]`.
#[derive(Debug, Clone, Args)]
pub struct PortArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    pub port: Option<String>,
}

/// `export [OPTIONS] CONTAINER`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `top CONTAINER [ps OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(
        value_name = "ps OPTIONS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub ps_args: Vec<String>,
}

/// `rename CONTAINER NEW_NAME`.
#[derive(Debug, Clone, Args)]
pub struct RenameArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "NEW_NAME")]
    pub new_name: String,
}

/// `import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long)]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    #[arg(value_name = "file|URL|-")]
    pub source: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

/// `commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]`.
#[derive(Debug, Clone, Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long)]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

/// `save [OPTIONS] IMAGE [IMAGE...]`.
#[derive(Debug, Clone, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

/// `build [OPTIONS] PATH | -`.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag in the "name:tag" format
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile"; "-" reads it from STDIN)
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set metadata for an image
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Always attempt to pull a newer version of the image
    #[arg(long)]
    pub pull: bool,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<String>,
    /// Set the networking mode for the RUN instructions during build
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Set type of progress output ("auto", "plain", "tty")
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Secret to expose to the build (format: "id=mysecret[,src=/local/secret]" or
    /// "id=mysecret,env=VAR")
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Output destination (format: "type=local,dest=path" or "type=tar,dest=file"; a plain
    /// path means type=local)
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Build context directory
    #[arg(value_name = "PATH")]
    pub context: String,
}

/// `berth builder <sub>`.
#[derive(Debug, Subcommand)]
pub enum BuilderCmd {
    /// Remove build cache
    Prune(BuilderPruneArgs),
}

/// `builder prune [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct BuilderPruneArgs {
    /// Remove all unused build cache, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=24h")
    #[arg(long = "filter")]
    pub filters: Vec<String>,
}

/// `load [OPTIONS]`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `history [OPTIONS] IMAGE`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub human: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    #[arg(value_name = "IMAGE")]
    pub image: String,
}

/// `images [OPTIONS] [REPOSITORY[:TAG]]`.
#[derive(Debug, Clone, Args)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    #[arg(value_name = "REPOSITORY[:TAG]")]
    pub reference: Option<String>,
}

/// `tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]`.
#[derive(Debug, Clone, Args)]
pub struct TagArgs {
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    pub source: String,
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    pub target: String,
}

/// `rmi [OPTIONS] IMAGE [IMAGE...]`.
#[derive(Debug, Clone, Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// Commands whose only option is `--format`.
#[derive(Debug, Clone, Args)]
pub struct FormatArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

/// `pull [OPTIONS] NAME[:TAG|@DIGEST]`.
#[derive(Debug, Clone, Args)]
pub struct PullArgs {
    /// Set platform if server is multi-platform capable
    #[arg(long, env = "DOCKER_DEFAULT_PLATFORM")]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    pub image: String,
}

/// `push [OPTIONS] NAME[:TAG]`.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(value_name = "NAME[:TAG]")]
    pub image: String,
}

/// `login [OPTIONS] [SERVER]`.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

/// `search [OPTIONS] TERM`.
#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// Filter output based on conditions provided (is-official, stars)
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Max number of search results
    #[arg(long, default_value_t = 25)]
    pub limit: u32,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Pretty-print search using a Go template
    #[arg(long)]
    pub format: Option<String>,
    #[arg(value_name = "TERM")]
    pub term: String,
}

/// `logout [SERVER]`.
#[derive(Debug, Clone, Args)]
pub struct LogoutArgs {
    #[arg(value_name = "SERVER")]
    pub server: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The argument definitions of a subcommand, as clap holds them.
    fn definitions(c: &clap::Command) -> Vec<String> {
        let mut c = c.clone();
        c.build();
        let mut out: Vec<String> = c.get_arguments().map(|a| format!("{a:?}")).collect();
        out.extend(c.get_groups().map(|g| format!("{g:?}")));
        out.push(format!(
            "{:?} {:?} {:?}",
            c.get_visible_aliases().collect::<Vec<_>>(),
            c.is_allow_external_subcommands_set(),
            c.has_subcommands()
        ));
        out
    }

    #[test]
    fn hot_subcommands_are_defined_as_in_the_whole_tree() {
        let full = Cli::command();
        let names = [
            "run", "create", "start", "stop", "restart", "kill", "rm", "ps", "logs", "exec",
            "inspect", "wait",
        ];
        for name in names {
            let hot = hot_subcommand(name).unwrap();
            let whole = full.find_subcommand(name).unwrap();
            assert_eq!(definitions(&hot), definitions(whole), "{name}");
        }
        assert!(hot_subcommand("build").is_none());
    }

    #[test]
    fn hot_parses_equal_whole_tree_parses() {
        for v in [
            &[
                "berth",
                "run",
                "--rm",
                "--network",
                "none",
                "busybox",
                "true",
            ][..],
            &[
                "berth",
                "-H",
                "unix:///x.sock",
                "run",
                "-d",
                "-e",
                "A=1",
                "busybox",
                "sh",
                "-c",
                "x -y",
            ],
            &[
                "berth",
                "--host=unix:///x",
                "-D",
                "exec",
                "-it",
                "c1",
                "ls",
                "-l",
            ],
            &[
                "berth", "--config", "/tmp/c", "ps", "-a", "--format", "{{.ID}}",
            ],
            &["berth", "inspect", "-f", "{{.State.Status}}", "c1", "c2"],
            &["berth", "rm", "-f", "a", "b"],
            &["berth", "-l", "debug", "logs", "-f", "--tail", "3", "c1"],
            &["berth", "create", "--name", "x", "busybox"],
            &["berth", "start", "-a", "x"],
            &["berth", "stop", "-t", "1", "x"],
            &["berth", "restart", "x"],
            &["berth", "kill", "-s", "HUP", "x"],
            &["berth", "wait", "x"],
        ] {
            let args = argv(v);
            let hot = Cli::parse_hot(&args).unwrap_or_else(|| panic!("not hot: {v:?}"));
            let whole = Cli::try_parse_from(&args).unwrap();
            assert_eq!(format!("{hot:?}"), format!("{whole:?}"), "{v:?}");
        }
    }

    #[test]
    fn help_errors_and_other_commands_take_the_whole_tree() {
        for v in [
            &["berth", "run", "--help"][..],
            &["berth", "run", "--bogus", "x"],
            &["berth", "run"],
            &["berth", "--help"],
            &["berth", "rn", "x"],
            &["berth", "-DH", "unix:///x", "ps"],
            &["berth", "images"],
            &["berth"],
        ] {
            assert!(Cli::parse_hot(&argv(v)).is_none(), "{v:?}");
        }
        let e = Cli::parse_args(&argv(&["berth", "run", "--bogus", "x"])).unwrap_err();
        assert!(e.to_string().contains("--bogus"), "{e}");
        assert!(Cli::parse_args(&argv(&["berth", "images"])).is_ok());
    }
}
