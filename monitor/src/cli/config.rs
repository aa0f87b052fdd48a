//! The configuration file (`/etc/monitor/monitor.toml`): what `monitor run` does when its
//! flags do not say otherwise.
//!
//! The mapping is generic: every key is the long name of an option of `monitor run` (its
//! field name works too: `interfaces` for `--iface`, `_` for `-`), and its value becomes
//! that option's default, so a flag on the command line always wins. An option added to
//! `monitor run` later is a key of the file without more code. Options global to every
//! command (`pin-dir`, `state-dir`, `run-dir`) apply to every command, so that `monitor
//! status` finds the daemon the file configured. Values: a string or number for an option
//! with a value, an array for one given repeatedly (`interfaces = ["ward0", "core0"]`),
//! `true`/`false` for a flag. Each value is checked by the option's own parser, and a
//! mistake is an error naming the file, the line and the key.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use clap::{Arg, ArgAction, Command};
use toml::de::{DeTable, DeValue};

/// Read when it exists and `--config` does not name another.
pub const DEFAULT_CONFIG: &str = "/etc/monitor/monitor.toml";
/// The subcommand the file configures.
const RUN: &str = "run";

/// Options that must be decided at the moment, never once for every start.
const NOT_IN_FILE: &[(&str, &str)] = &[
    (
        "accept-shrink",
        "accepting a policy that removes much of the one in force is a decision for one \
         start; give --accept-shrink on the command line when it is meant",
    ),
    ("config", "the file cannot name another file"),
    ("help", "not a setting"),
    ("version", "not a setting"),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0}: {1}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("{file}:{line}: {message}")]
    At {
        file: PathBuf,
        line: usize,
        message: String,
    },
}

/// One setting of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Setting {
    key: String,
    line: usize,
    value: Value,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Flag(bool),
    One(String),
    Many(Vec<String>),
}

/// A configuration file, read and checked against the command line's options.
#[derive(Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    settings: Vec<Setting>,
}

/// The file to read: `--config PATH` (or `--config=PATH`) from `argv`, else the default
/// when it exists. A path given but missing is an error when read.
pub fn path_from_args(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy();
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    let default = Path::new(DEFAULT_CONFIG);
    default.exists().then(|| default.to_path_buf())
}

impl ConfigFile {
    /// Reads and checks `path` against `command` (the whole CLI): every key an option of
    /// `monitor run`, every value one its parser takes.
    pub fn read(path: &Path, command: &Command) -> Result<ConfigFile, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_path_buf(), e))?;
        ConfigFile::parse(path, &text, command)
    }

    fn parse(path: &Path, text: &str, command: &Command) -> Result<ConfigFile, ConfigError> {
        let at = |offset: usize, message: String| ConfigError::At {
            file: path.to_path_buf(),
            line: line_of(text, offset),
            message,
        };
        let table = DeTable::parse(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, format!("not valid TOML: {}", e.message().trim()))
        })?;
        let mut settings = Vec::new();
        for (key, value) in table.get_ref() {
            let offset = key.span().start;
            let name = key.get_ref().to_string();
            let fail = |message: String| at(offset, format!("key `{name}`: {message}"));
            let arg = find_arg(command, &name).ok_or_else(|| {
                fail(format!(
                    "not an option of `monitor run`; the keys are: {}",
                    keys(command).join(", ")
                ))
            })?;
            let long = arg.get_long().unwrap_or_default().to_owned();
            if let Some((_, why)) = NOT_IN_FILE.iter().find(|(key, _)| *key == long) {
                return Err(fail(format!("not allowed in the file: {why}")));
            }
            let value = convert(value.get_ref(), arg).map_err(fail)?;
            check(command, &long, &value).map_err(fail)?;
            settings.push(Setting {
                key: long,
                line: line_of(text, offset),
                value,
            });
        }
        settings.sort_by_key(|s| s.line);
        Ok(ConfigFile {
            path: path.to_path_buf(),
            settings,
        })
    }

    /// `command` with the file's values as the defaults of their options: a flag given on
    /// the command line still wins.
    pub fn apply(&self, mut command: Command) -> Command {
        for setting in &self.settings {
            let global = command
                .get_arguments()
                .any(|a| a.get_long() == Some(&setting.key) && a.is_global_set());
            let id = setting.key.clone();
            let set = |arg: Arg| {
                let arg = match &setting.value {
                    Value::Flag(on) => arg.default_value(if *on { "true" } else { "false" }),
                    Value::One(value) => arg.default_value(value.clone()),
                    Value::Many(values) => arg.default_values(values.clone()),
                };
                // The file says it: the option is given (e.g. `--iface` required).
                arg.required(false)
            };
            command = if global {
                let arg_id = arg_id(&command, &id);
                command.mut_arg(arg_id, set)
            } else {
                command.mut_subcommand(RUN, |run| {
                    let arg_id = arg_id(&run, &id);
                    run.mut_arg(arg_id, set)
                })
            };
        }
        command
    }

    /// The keys the file sets, in file order.
    pub fn keys(&self) -> Vec<&str> {
        self.settings.iter().map(|s| s.key.as_str()).collect()
    }
}

/// The id of the argument with long name `long` in `command`.
fn arg_id(command: &Command, long: &str) -> String {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .map_or_else(|| long.to_owned(), |a| a.get_id().to_string())
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .unwrap_or(text)
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

fn normalize(name: &str) -> String {
    name.replace('_', "-").to_ascii_lowercase()
}

/// The options a key may name: those of `monitor run` and the global ones.
fn candidates(command: &Command) -> Vec<&Arg> {
    let run = command
        .get_subcommands()
        .find(|c| c.get_name() == RUN)
        .into_iter()
        .flat_map(Command::get_arguments);
    command
        .get_arguments()
        .filter(|a| a.is_global_set())
        .chain(run)
        .filter(|a| a.get_long().is_some())
        .collect()
}

/// The option a key names: by its long name (or an alias) or its field name.
fn find_arg<'a>(command: &'a Command, key: &str) -> Option<&'a Arg> {
    let key = normalize(key);
    candidates(command).into_iter().find(|arg| {
        let by_long = arg
            .get_long()
            .into_iter()
            .chain(arg.get_all_aliases().unwrap_or_default())
            .any(|long| normalize(long) == key);
        by_long || normalize(arg.get_id().as_str()) == key
    })
}

/// Every key the file takes, for the error of an unknown one.
fn keys(command: &Command) -> Vec<String> {
    let mut keys: Vec<String> = candidates(command)
        .into_iter()
        .filter_map(|a| a.get_long())
        .filter(|long| !NOT_IN_FILE.iter().any(|(k, _)| k == long))
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn scalar(value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(i) => Some(i.to_string()),
        DeValue::Float(f) => Some(f.to_string()),
        DeValue::Boolean(b) => Some(b.to_string()),
        DeValue::Datetime(_) | DeValue::Array(_) | DeValue::Table(_) => None,
    }
}

fn convert(value: &DeValue<'_>, arg: &Arg) -> Result<Value, String> {
    let long = arg.get_long().unwrap_or_default();
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            DeValue::Boolean(on) => Ok(Value::Flag(*on)),
            _ => Err(format!("`--{long}` is a flag: write true or false")),
        },
        ArgAction::Append => match value {
            DeValue::Array(items) => items
                .iter()
                .map(|item| scalar(item.get_ref()))
                .collect::<Option<Vec<_>>>()
                .map(Value::Many)
                .ok_or_else(|| format!("`--{long}`: an array of strings")),
            other => scalar(other)
                .map(|v| Value::Many(vec![v]))
                .ok_or_else(|| format!("`--{long}`: a string or an array of strings")),
        },
        _ => scalar(value)
            .map(Value::One)
            .ok_or_else(|| format!("`--{long}` takes one value: a string or a number")),
    }
}

/// The value as the option's own parser sees it: `monitor run --LONG VALUE`.
fn check(command: &Command, long: &str, value: &Value) -> Result<(), String> {
    let mut argv: Vec<String> = vec!["monitor".into(), RUN.into()];
    match value {
        Value::Flag(true) => argv.push(format!("--{long}")),
        Value::Flag(false) => return Ok(()),
        Value::One(v) => argv.push(format!("--{long}={v}")),
        Value::Many(values) => {
            for v in values {
                argv.push(format!("--{long}={v}"));
            }
        }
    }
    let command = command
        .clone()
        .mut_subcommand(RUN, |run| {
            let ids: Vec<String> = run
                .get_arguments()
                .filter(|a| a.is_required_set())
                .map(|a| a.get_id().to_string())
                .collect();
            ids.into_iter()
                .fold(run, |run, id| run.mut_arg(id, |a| a.required(false)))
        })
        .disable_help_flag(true)
        .disable_version_flag(true);
    match command.try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => {
            // clap's message without its usage and help hints: the error and, for a
            // choice, the possible values.
            let text = e.to_string();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            Err(lines.join(" ").trim_start_matches("error: ").to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, FromArgMatches as _};

    use crate::cli::{Cli, Command as Sub};

    fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
        ConfigFile::parse(
            Path::new("/etc/monitor/monitor.toml"),
            text,
            &Cli::command(),
        )
    }

    fn run_with(text: &str, argv: &[&str]) -> Cli {
        let file = parse(text).unwrap_or_else(|e| panic!("{e}"));
        let matches = file
            .apply(Cli::command())
            .try_get_matches_from(argv)
            .unwrap_or_else(|e| panic!("{e}"));
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| panic!("{e}"))
    }

    const FILE: &str = r#"
# the router's legs
interfaces = ["ward0", "core0"]
policies = "/etc/monitor/policies"
metrics-addr = "10.0.0.1:9479"
state_dir = "/srv/monitor"
"#;

    #[test]
    fn the_file_alone_configures_a_run_and_the_global_options_of_every_command() {
        let cli = run_with(FILE, &["monitor", "run"]);
        assert_eq!(cli.state_dir, Path::new("/srv/monitor"));
        let Sub::Run {
            interfaces,
            policies,
            metrics_addr,
            ..
        } = cli.command
        else {
            panic!("not a run");
        };
        assert_eq!(interfaces, ["ward0", "core0"]);
        assert_eq!(
            policies.as_deref(),
            Some(Path::new("/etc/monitor/policies"))
        );
        assert_eq!(
            format!("{metrics_addr:?}"),
            "Some(At(10.0.0.1:9479))",
            "an address from the file is one asked for"
        );
        let status = run_with(FILE, &["monitor", "status"]);
        assert_eq!(status.state_dir, Path::new("/srv/monitor"));
    }

    #[test]
    fn a_flag_wins_over_the_file() {
        let cli = run_with(
            FILE,
            &[
                "monitor",
                "--state-dir",
                "/tmp/s",
                "run",
                "--iface",
                "lab0",
                "--metrics-addr",
                "off",
            ],
        );
        assert_eq!(cli.state_dir, Path::new("/tmp/s"));
        let Sub::Run {
            interfaces,
            policies,
            metrics_addr,
            ..
        } = cli.command
        else {
            panic!("not a run");
        };
        assert_eq!(interfaces, ["lab0"], "the flags replace the file's list");
        assert_eq!(format!("{metrics_addr:?}"), "Some(Off)");
        assert_eq!(
            policies.as_deref(),
            Some(Path::new("/etc/monitor/policies")),
            "what the flags leave out still comes from the file"
        );
    }

    #[test]
    fn flags_and_single_interfaces_take_their_toml_types() {
        let cli = run_with(
            "iface = \"ward0\"\nxdp-mode = \"generic\"\n",
            &["monitor", "run"],
        );
        let Sub::Run {
            interfaces,
            xdp_mode,
            ..
        } = cli.command
        else {
            panic!("not a run");
        };
        assert_eq!(interfaces, ["ward0"]);
        assert_eq!(xdp_mode, crate::cli::run::XdpModeArg::Generic);
    }

    fn error(text: &str) -> String {
        match parse(text) {
            Ok(file) => panic!("accepted: {:?}", file.settings),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn mistakes_name_the_file_the_line_and_the_key() {
        let e = error("policies = \"/p\"\n\ninterface = [\"ward0\"]\n");
        assert!(
            e.starts_with("/etc/monitor/monitor.toml:3: key `interface`: not an option"),
            "{e}"
        );
        assert!(e.contains("iface"), "the keys are listed: {e}");
        let e = error("metrics-addr = \"localhost\"\n");
        assert!(
            e.starts_with("/etc/monitor/monitor.toml:1: key `metrics-addr`: invalid value"),
            "{e}"
        );
        let e = error("\n\nxdp-mode = \"turbo\"\n");
        assert!(
            e.starts_with("/etc/monitor/monitor.toml:3: key `xdp-mode`"),
            "{e}"
        );
        assert!(e.contains("native"), "the choices are named: {e}");
        let e = error("accept-shrink = true\n");
        assert!(e.contains(":1: key `accept-shrink`: not allowed"), "{e}");
        let e = error("iface = [\"ward0\", [\"x\"]]\n");
        assert!(e.contains(":1: key `iface`"), "{e}");
        let e = error("pin-dir = \n");
        assert!(
            e.starts_with("/etc/monitor/monitor.toml:1: not valid TOML"),
            "{e}"
        );
    }

    /// The example the package installs as /etc/monitor/monitor.toml: what it sets is
    /// valid, and so is every key it shows commented out.
    #[test]
    fn the_shipped_example_is_valid_with_every_commented_key_too() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/monitor.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
        let file =
            ConfigFile::parse(path, &text, &Cli::command()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.keys(), ["policies"]);
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let file = ConfigFile::parse(path, &uncommented, &Cli::command())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(file.keys().len() >= 10, "{:?}", file.keys());
    }

    #[test]
    fn the_config_option_is_found_before_parsing() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            path_from_args(&argv(&["monitor", "--config", "/x.toml", "run"])),
            Some(PathBuf::from("/x.toml"))
        );
        assert_eq!(
            path_from_args(&argv(&["monitor", "run", "--config=/y.toml"])),
            Some(PathBuf::from("/y.toml"))
        );
    }
}
