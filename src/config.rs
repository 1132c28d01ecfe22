//! Flags from the environment and from a TOML file, for `dss`, `uss`, `pool` and `auth`.
//!
//! Every flag of those commands can also be given as the environment variable
//! `DECONFLICT_<FLAG>` (upper case, `-` as `_`: `DECONFLICT_JWT_AUDIENCE`) or as a key of the
//! TOML file named by `--config FILE` (`jwt-audience = ["a", "b"]`, or `jwt_audience`; keys may
//! also sit in a table named after the command, `[dss]`, which wins over the top level).
//! A flag on the command line wins over the environment, which wins over the file; a repeatable
//! flag takes its whole list from the first of them that has it (a comma-separated list in the
//! environment). The values are handed to the same parser as flags, so they are checked the
//! same way; a key the file should not have is an error naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{ArgAction, CommandFactory};

/// The commands whose flags can come from the environment and a file.
const CONFIGURABLE: [&str; 4] = ["dss", "uss", "pool", "auth"];

/// The environment variable of a flag: `DECONFLICT_` and its long name, `-` as `_`.
pub(crate) fn env_name(long: &str) -> String {
    format!("DECONFLICT_{}", long.to_uppercase().replace('-', "_"))
}

/// The command line with the flags it lacks filled in from `env` and the `--config` file.
pub(crate) fn expand(argv: Vec<OsString>, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<OsString>> {
    let text: Vec<Option<String>> = argv.iter().map(|a| a.to_str().map(str::to_owned)).collect();
    // The subcommand: the first word after the program that is not a flag or a global flag's value.
    let mut i = 1;
    let command = loop {
        match text.get(i) {
            None | Some(None) => return Ok(argv),
            Some(Some(a)) if a == "--log-format" || a == "--shutdown-grace-secs" || a == "--config" => i += 2,
            Some(Some(a)) if a.starts_with('-') => i += 1,
            Some(Some(a)) => break a.clone(),
        }
    };
    if !CONFIGURABLE.contains(&command.as_str()) {
        return Ok(argv);
    }
    let root = crate::cli::Cli::command();
    let Some(sub) = root.find_subcommand(&command) else { return Ok(argv) };
    let given: BTreeSet<String> = text
        .iter()
        .flatten()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .collect();
    let file = match config_path(&text) {
        Some(path) => Some(read_file(&path, &command)?),
        None => None,
    };
    // The command's own flags and the global ones, each once.
    let mut seen = BTreeSet::new();
    let args: Vec<&clap::Arg> = sub
        .get_arguments()
        .chain(root.get_arguments())
        .filter(|a| a.get_long().is_some_and(|l| seen.insert(l.to_owned())))
        .collect();
    if let Some((path, table)) = &file {
        let known: BTreeSet<String> = args.iter().filter_map(|a| a.get_long()).map(str::to_owned).collect();
        let unknown: Vec<&String> = table.keys().filter(|k| !known.contains(*k)).collect();
        if !unknown.is_empty() {
            bail!(
                "{}: {} not a flag of `deconflict {command}` (see `deconflict {command} --help`)",
                path.display(),
                unknown.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    + if unknown.len() == 1 { " is" } else { " are" }
            );
        }
    }
    let mut added: Vec<OsString> = Vec::new();
    for arg in args {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version" | "config") || given.contains(long) {
            continue;
        }
        let repeatable = matches!(arg.get_action(), ArgAction::Append);
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let values: Vec<String> = if let Some(value) = env(&env_name(long)) {
            let what = env_name(long);
            if switch {
                vec![parse_switch(&value).with_context(|| format!("{what}={value}"))?.to_string()]
            } else if repeatable {
                value.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect()
            } else {
                vec![value]
            }
        } else if let Some((path, value)) = file.as_ref().and_then(|(p, t)| Some((p, t.get(long)?))) {
            toml_values(value, switch, repeatable).with_context(|| format!("{}: `{long}`", path.display()))?
        } else {
            continue;
        };
        for value in values {
            if switch {
                if value == "true" {
                    added.push(format!("--{long}").into());
                }
            } else {
                added.push(format!("--{long}={value}").into());
            }
        }
    }
    // After the subcommand's own words (these commands take no positional arguments): the
    // parser reads them as that command's flags.
    let mut out = argv;
    out.extend(added);
    Ok(out)
}

/// `--config FILE` or `--config=FILE`, wherever it is.
fn config_path(text: &[Option<String>]) -> Option<PathBuf> {
    for (i, a) in text.iter().enumerate() {
        match a.as_deref() {
            Some("--config") => return text.get(i + 1).cloned().flatten().map(PathBuf::from),
            Some(a) if a.starts_with("--config=") => return Some(PathBuf::from(&a["--config=".len()..])),
            _ => {}
        }
    }
    None
}

/// The file's keys for `command`: its top level (scalars and arrays) with the `[command]`
/// table over it; other commands' tables are left alone. Keys are normalised to kebab case.
fn read_file(path: &PathBuf, command: &str) -> Result<(PathBuf, BTreeMap<String, toml::Value>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading --config {}", path.display()))?;
    let doc: toml::Table = text.parse().with_context(|| format!("{} is not valid TOML", path.display()))?;
    let mut keys = BTreeMap::new();
    let mut own = None;
    for (key, value) in doc {
        match value {
            toml::Value::Table(table) if CONFIGURABLE.contains(&key.as_str()) => {
                if key == command {
                    own = Some(table);
                }
            }
            toml::Value::Table(_) => bail!(
                "{}: `[{key}]` is not a command's table (expected one of {})",
                path.display(),
                CONFIGURABLE.map(|c| format!("[{c}]")).join(", ")
            ),
            value => {
                keys.insert(key.replace('_', "-"), value);
            }
        }
    }
    for (key, value) in own.unwrap_or_default() {
        keys.insert(key.replace('_', "-"), value);
    }
    Ok((path.clone(), keys))
}

fn parse_switch(value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" | "" => Ok(false),
        other => bail!("`{other}` is not a switch value: use true or false"),
    }
}

fn toml_values(value: &toml::Value, switch: bool, repeatable: bool) -> Result<Vec<String>> {
    let scalar = |v: &toml::Value| -> Result<String> {
        Ok(match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => bail!("expected a string, a number or a boolean, got {}", other.type_str()),
        })
    };
    if switch {
        return match value {
            toml::Value::Boolean(b) => Ok(vec![b.to_string()]),
            other => bail!("expected true or false, got {}", other.type_str()),
        };
    }
    match value {
        toml::Value::Array(items) if repeatable => items.iter().map(scalar).collect(),
        toml::Value::Array(_) => bail!("takes one value, not a list"),
        other => Ok(vec![scalar(other)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("deconflict").chain(words.iter().copied()).map(OsString::from).collect()
    }

    fn dss(words: &[&str], env: &[(&str, &str)]) -> Result<crate::cli::DssArgs> {
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let expanded = expand(argv(words), &|k| env.get(k).cloned())?;
        match crate::cli::Cli::try_parse_from(expanded)?.command {
            crate::cli::Command::Dss(a) => Ok(*a),
            _ => bail!("not dss"),
        }
    }

    /// The error of a parse that must fail, with its whole chain.
    fn refused(parsed: Result<crate::cli::DssArgs>, what: &str) -> String {
        match parsed {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn flags_override_the_environment_which_overrides_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("dss.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7000\"\nretention_secs = 60\njwt-audience = [\"file.example\"]\n\
             insecure-dev-auth = true\n[dss]\nrelevance-margin-m = 12.5\n[uss]\nclient-id = \"ignored\"\n",
        )
        .expect("write");
        let f = file.to_str().expect("path");
        let a = dss(&["dss", "--config", f], &[]).expect("file only");
        assert_eq!(a.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(a.retention_secs, 60);
        assert_eq!(a.jwt_audiences, ["file.example"]);
        assert!(a.insecure_dev_auth);
        assert_eq!(a.relevance_margin_m, 12.5);

        let env = [("DECONFLICT_LISTEN", "127.0.0.1:7001"), ("DECONFLICT_JWT_AUDIENCE", "a.example, b.example")];
        let a = dss(&["dss", "--config", f], &env).expect("env over file");
        assert_eq!(a.listen.to_string(), "127.0.0.1:7001");
        assert_eq!(a.jwt_audiences, ["a.example", "b.example"]);
        assert_eq!(a.retention_secs, 60, "the file still fills what the environment lacks");

        let a = dss(&["dss", "--config", f, "--listen", "127.0.0.1:7002", "--jwt-audience=c.example"], &env)
            .expect("flags over env");
        assert_eq!(a.listen.to_string(), "127.0.0.1:7002");
        assert_eq!(a.jwt_audiences, ["c.example"]);

        let a = dss(&["dss"], &[("DECONFLICT_INSECURE_DEV_AUTH", "false"), ("DECONFLICT_STRICT_SCOPES", "yes")])
            .expect("switches");
        assert!(!a.insecure_dev_auth && a.strict_scopes);
        // Global flags too.
        let expanded =
            expand(argv(&["dss"]), &|k| (k == "DECONFLICT_LOG_FORMAT").then(|| "json".to_owned())).expect("expand");
        assert_eq!(crate::cli::Cli::try_parse_from(expanded).expect("parse").log_format, "json");
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("dss.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:7000\"\nlisten-adress = \"x\"\n").expect("write");
        let err = refused(dss(&["dss", "--config", file.to_str().expect("path")], &[]), "unknown key");
        assert!(err.contains("`listen-adress` is not a flag of `deconflict dss`"), "{err}");

        std::fs::write(&file, "retention-secs = \"soon\"\n").expect("write");
        let err = refused(dss(&["dss", "--config", file.to_str().expect("path")], &[]), "bad value");
        assert!(err.contains("retention-secs") && err.contains("soon"), "{err}");

        let err = refused(dss(&["dss"], &[("DECONFLICT_INSECURE_DEV_AUTH", "maybe")]), "bad switch");
        assert!(err.contains("DECONFLICT_INSECURE_DEV_AUTH=maybe"), "{err}");

        std::fs::write(&file, "[dsss]\nlisten = \"x\"\n").expect("write");
        let err = refused(dss(&["dss", "--config", file.to_str().expect("path")], &[]), "bad table");
        assert!(err.contains("[dsss]"), "{err}");
        let err = refused(dss(&["dss", "--config", "/nonexistent/deconflict.toml"], &[]), "missing file");
        assert!(err.contains("/nonexistent/deconflict.toml"), "{err}");
    }

    #[test]
    fn other_commands_are_left_alone() {
        let words = argv(&["plan", "--uss", "http://x", "f.json"]);
        assert_eq!(expand(words.clone(), &|_| Some("1".into())).expect("expand"), words);
    }
}
