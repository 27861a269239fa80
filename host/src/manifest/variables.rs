//! `[variables]`: named values given when an app is loaded (from the environment, a secrets file
//! or their `default`), and the `{{ name }}` templates of function config values that use them.
//!
//! The manifest holds only the templates: values are filled in by the host at load time, so a
//! [`super::Manifest`] never carries a secret's value (unless the file itself wrote it as a
//! `default`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::FunctionSpec;

/// One `[variables]` entry: `name = { default = "...", required = true, secret = true }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariableSpec {
    /// The value used when no provider gives one; `None` for a required variable.
    pub default: Option<String>,
    /// Loading the app fails when no provider gives a value.
    pub required: bool,
    /// The value is hidden wherever the host shows the app (listings, errors, logs).
    pub secret: bool,
}

/// A variable's name: `[a-z][a-z0-9_]*`, so that it maps to one environment variable
/// (`HOST_VAR_<NAME>`, upper-cased) and back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct VariableName(String);

/// Whether `name` is a valid variable name.
fn is_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl VariableName {
    fn parse(name: &str) -> Result<VariableName, String> {
        if is_variable_name(name) {
            Ok(VariableName(name.to_string()))
        } else {
            Err(format!(
                "invalid variable name `{name}`: expected a lowercase letter, then lowercase letters, digits or `_` ([a-z][a-z0-9_]*)"
            ))
        }
    }
}

deserialize_from_str!(VariableName, VariableName::parse);

/// A `[variables]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
}

impl RawVariable {
    /// The variable `name`, checked: it has either a `default` or `required = true` (as in Spin).
    fn check(self, name: &str) -> Result<VariableSpec, String> {
        let at = format!("variables.{name}");
        match (&self.default, self.required) {
            (Some(_), true) => Err(format!(
                "{at}: `default` and `required = true` exclude each other (a required variable has no default)"
            )),
            (None, false) => Err(format!("{at}: give it a `default` or mark it `required = true`")),
            _ => Ok(VariableSpec { default: self.default, required: self.required, secret: self.secret }),
        }
    }
}

/// Check every `[variables]` entry.
pub(super) fn check(raw: BTreeMap<VariableName, RawVariable>) -> Result<BTreeMap<String, VariableSpec>, String> {
    raw.into_iter().map(|(name, variable)| Ok((name.0.clone(), variable.check(&name.0)?))).collect()
}

/// A piece of a config value: literal text, or the variable a `{{ name }}` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece<'a> {
    /// Text kept as written.
    Text(&'a str),
    /// The value of this variable.
    Variable(&'a str),
}

/// A config value split into text and `{{ name }}` references (spaces inside the braces are
/// optional). There is no escape: a config value cannot contain `{{` other than as a reference.
fn template(value: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("`{{` without a closing `}}`")?;
        let name = after[..end].trim_matches([' ', '\t']);
        if !is_variable_name(name) {
            return Err(format!("`{{{{{}}}}}` is not a reference `{{{{ name }}}}` to a variable", &after[..end]));
        }
        pieces.push(Piece::Variable(name));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// `value` with every `{{ name }}` replaced by `lookup(name)`. Only the host calls it, on config
/// values of a manifest it parsed, whose templates were checked.
pub(crate) fn render<'v>(value: &str, lookup: impl Fn(&str) -> &'v str) -> String {
    let pieces = template(value).expect("the manifest checked its templates");
    pieces
        .iter()
        .map(|piece| match piece {
            Piece::Text(text) => text,
            Piece::Variable(name) => lookup(name),
        })
        .collect()
}

/// Check that every template of every function's config is well formed and names a declared
/// variable.
pub(super) fn check_config(
    functions: &BTreeMap<String, FunctionSpec>,
    variables: &BTreeMap<String, VariableSpec>,
) -> Result<(), String> {
    for (function, spec) in functions {
        for (key, value) in &spec.config {
            let at = format!("function.{function}.config.{key}");
            for piece in template(value).map_err(|e| format!("{at}: {e}"))? {
                if let Piece::Variable(name) = piece
                    && !variables.contains_key(name)
                {
                    return Err(format!("{at}: `{{{{ {name} }}}}` names no variable; declare it in `[variables]`"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variable(toml: &str) -> Result<VariableSpec, String> {
        let raw: RawVariable = toml::from_str(toml).map_err(|e| e.to_string())?;
        raw.check("v")
    }

    #[test]
    fn a_variable_has_a_default_or_is_required_never_both() {
        assert_eq!(
            variable("default = \"x\"").unwrap(),
            VariableSpec { default: Some("x".into()), required: false, secret: false }
        );
        assert_eq!(
            variable("required = true\nsecret = true").unwrap(),
            VariableSpec { default: None, required: true, secret: true }
        );
        assert_eq!(
            variable("default = \"x\"\nrequired = true").unwrap_err(),
            "variables.v: `default` and `required = true` exclude each other (a required variable has no default)"
        );
        assert_eq!(
            variable("secret = true").unwrap_err(),
            "variables.v: give it a `default` or mark it `required = true`"
        );
    }

    #[test]
    fn names_are_lowercase_letters_digits_and_underscores() {
        for good in ["a", "api_key", "k8s_token_2"] {
            assert!(VariableName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Api", "api-key", "_key", "2fa", "ключ"] {
            let err = VariableName::parse(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")) && err.contains("[a-z][a-z0-9_]*"), "{err}");
        }
    }

    #[test]
    fn templates_split_text_and_references() {
        use Piece::{Text, Variable};
        assert_eq!(template("plain").unwrap(), [Text("plain")]);
        assert_eq!(template("").unwrap(), []);
        assert_eq!(template("{{a}}").unwrap(), [Variable("a")]);
        assert_eq!(
            template("{{ url }}?key={{\tkey }}&v=1").unwrap(),
            [Variable("url"), Text("?key="), Variable("key"), Text("&v=1")]
        );
        assert_eq!(template("a }} b").unwrap(), [Text("a }} b")]);
        assert_eq!(template("x {{ a").unwrap_err(), "`{{` without a closing `}}`");
        assert_eq!(template("{{ A-b }}").unwrap_err(), "`{{ A-b }}` is not a reference `{{ name }}` to a variable");
        assert_eq!(template("{{}}").unwrap_err(), "`{{}}` is not a reference `{{ name }}` to a variable");
    }

    #[test]
    fn render_fills_every_reference() {
        let value = |name: &str| if name == "a" { "1" } else { "2" };
        assert_eq!(render("{{ a }}-{{b}}-{{ a }}!", value), "1-2-1!");
        assert_eq!(render("no references", value), "no references");
    }
}
