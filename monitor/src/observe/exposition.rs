//! The Prometheus text format, written directly: a scrape at 10,000 devices has ~130,000
//! series, and building them as prometheus objects first cost seconds and hundreds of MB.
//! Families are named only through [`super::families`].

use std::fmt::Write as _;

use super::families::Family;

/// An exposition being written.
#[derive(Debug, Default)]
pub struct Text {
    pub out: String,
}

/// A sample value: counters are integers, gauges floats.
#[derive(Clone, Copy, Debug)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl Value {
    /// 1 or 0.
    pub fn flag(on: bool) -> Value {
        Value::Float(if on { 1.0 } else { 0.0 })
    }
}

impl Text {
    /// Starts a family: its HELP and TYPE lines, from the table.
    pub fn family(&mut self, family: &Family) {
        let (name, help, kind) = (family.name, family.help, family.kind.name());
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample of `family`; `labels` is already rendered (`a="x",b="y"`), or empty,
    /// and `extra` is one more label after them.
    pub fn sample(
        &mut self,
        family: &Family,
        labels: &str,
        extra: Option<(&str, &str)>,
        value: Value,
    ) {
        self.out.push_str(family.name);
        if !labels.is_empty() || extra.is_some() {
            self.out.push('{');
            self.out.push_str(labels);
            if let Some((k, v)) = extra {
                if !labels.is_empty() {
                    self.out.push(',');
                }
                push_label(&mut self.out, k, v);
            }
            self.out.push('}');
        }
        let _ = match value {
            Value::Int(v) => writeln!(self.out, " {v}"),
            Value::Float(v) if v.is_finite() => writeln!(self.out, " {v}"),
            Value::Float(v) if v.is_nan() => writeln!(self.out, " NaN"),
            Value::Float(v) => writeln!(self.out, " {}Inf", if v > 0.0 { '+' } else { '-' }),
        };
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, family: &Family, value: Value) {
        self.family(family);
        self.sample(family, "", None, value);
    }
}

/// Appends `key="value"` with the value escaped as the text format requires.
pub fn push_label(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::families::{Kind, MODE};

    #[test]
    fn text_escapes_label_values_and_writes_values_as_the_format_wants() {
        let mut labels = String::new();
        push_label(&mut labels, "medical_device", "a\\b\"c\nd");
        assert_eq!(labels, r#"medical_device="a\\b\"c\nd""#);
        let example = Family {
            name: "hospmon_x",
            kind: Kind::Gauge,
            help: "An example.",
            labels: &["medical_device", "mode"],
        };
        let mut t = Text::default();
        t.family(&example);
        t.sample(
            &example,
            &labels,
            Some(("mode", "learn")),
            Value::Float(1.0),
        );
        t.sample(&example, "", Some(("mode", "audit")), Value::Float(0.25));
        t.sample(&example, "", None, Value::Float(f64::INFINITY));
        t.sample(&example, "", None, Value::Int(u64::MAX));
        assert_eq!(
            t.out,
            "# HELP hospmon_x An example.\n# TYPE hospmon_x gauge\n\
             hospmon_x{medical_device=\"a\\\\b\\\"c\\nd\",mode=\"learn\"} 1\n\
             hospmon_x{mode=\"audit\"} 0.25\n\
             hospmon_x +Inf\n\
             hospmon_x 18446744073709551615\n"
        );
        let mut t = Text::default();
        t.single(&MODE, Value::flag(true));
        assert!(
            t.out.ends_with(&format!("\n{} 1\n", MODE.name)),
            "{}",
            t.out
        );
    }
}
