//! Which external programs the tests, the lab, the demo and the bench run, read from their
//! sources, so that a test can hold setup's [`TOOLS`](crate::setup::TOOLS) to them.
//!
//! The scanner knows the ways this workspace starts programs and refuses to guess at the
//! rest: a spawn whose program it cannot name is reported as unknown, so a new way of
//! running something makes the check fail until the scanner (or [`KNOWN_EXPRESSIONS`])
//! learns it. What it recognises:
//!
//! - `Command::new("prog")`;
//! - `Command::new(param)` inside `fn helper(.., param: ..)`: then every call
//!   `helper("prog", ..)` (unqualified in the helper's file, or `module::helper(..)`) names a
//!   program, and a call with anything but a literal there is unknown;
//! - `Command::new(var)` after `for var in ["a", "b"]` in the same function;
//! - `"sh", "-c", SCRIPT` and `Command::new("sh").arg("-c").arg(SCRIPT)`: the commands of
//!   the script (a literal, `format!("...")`, a `let` of one of them, or a helper's
//!   parameter, whose calls then pass scripts);
//! - `ip netns exec NS PROG` (`"netns", "exec"` in an argument list) and the argv helpers of
//!   [`ARGV_HELPERS`] such as the lab's `NetNs::exec(&["sysctl", ..])`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// Shells whose `-c` argument is a script to read.
const SHELLS: &[&str] = &["sh", "bash", "dash"];

/// Programs that are run but are not setup's to install, and why.
pub const NOT_INSTALLED_BY_SETUP: &[(&str, &str)] = &[
    (
        "cargo",
        "the toolchain that builds and runs the tests; rustup's, not a Debian package",
    ),
    (
        "rustup",
        "runs the nightly toolchain the XDP object builds with; there before setup runs",
    ),
];

/// Builtins of Debian's sh (dash): the shell runs them itself, so a script's use of them
/// is no program to install.
const SH_BUILTINS: &[&str] = &[
    "[", "test", "echo", "printf", "kill", "wait", "exit", "set", "cd", "command", "true", "false",
    "read", "export", "trap", ":", ".", "eval", "exec", "shift", "return", "unset",
];

/// Spawned expressions that are not literals (a leading `&` left out, spaces removed), by
/// file (`*`: any file), with what they run. None is an external program: each is cargo
/// or a binary of this workspace.
pub const KNOWN_EXPRESSIONS: &[(&str, &str, &str)] = &[
    (
        "*",
        "monitor_bin()",
        "the monitor binary of this build (tests/src/harness.rs)",
    ),
    (
        "tests/src/harness.rs",
        "std::env::var(\"CARGO\").unwrap_or_else(|_|\"cargo\".into())",
        "cargo, building the monitor binary when it is missing",
    ),
    (
        "xtask/src/cmd.rs",
        "std::env::var_os(\"CARGO\").unwrap_or_else(||\"cargo\".into())",
        "the cargo that runs xtask",
    ),
    (
        "xtask/src/demo.rs",
        "exe",
        "target/release/monitor, just built",
    ),
    (
        "xtask/src/bench.rs",
        "release.join(\"monitor-bench\")",
        "target/release/monitor-bench, just built",
    ),
    (
        "xtask/src/package.rs",
        "exe",
        "target/release/monitor, just built",
    ),
    (
        "tests/tests/package.rs",
        "env!(\"CARGO\")",
        "the cargo that builds the tests, running `cargo xtask package`",
    ),
    (
        "tests/tests/package.rs",
        "installed_bin",
        "/usr/bin/monitor, as the package under test installed it",
    ),
    (
        "monitor/src/lab/demo.rs",
        "self.exe",
        "the monitor binary itself (std::env::current_exe)",
    ),
    (
        "tests/src/bin/monitor-bench.rs",
        "self.monitor",
        "the monitor binary given with --monitor-bin",
    ),
    (
        "tests/src/bin/monitor-bench.rs",
        "monitor",
        "the monitor binary given with --monitor-bin",
    ),
    (
        "tests/tests/faults.rs",
        "{bin}",
        "format argument `bin = monitor_bin().display()` of the script",
    ),
];

/// Functions (methods here) whose slice argument is a command line, its first element the
/// program, and which run it through a wrapper the scanner sees in their body.
pub const ARGV_HELPERS: &[(&str, &str, &str)] = &[(
    "monitor/src/lab/mod.rs",
    "exec",
    "NetNs::exec(ARGV) runs `ip netns exec NS ARGV...`",
)];

/// A program run at `file:line`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Spawn {
    pub file: String,
    pub line: usize,
    pub program: String,
}

/// A place that runs something the scanner cannot name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unknown {
    pub file: String,
    pub line: usize,
    pub what: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    pub spawns: Vec<Spawn>,
    pub unknown: Vec<Unknown>,
    /// The [`KNOWN_EXPRESSIONS`] and [`ARGV_HELPERS`] met, as `file expression`.
    pub known: BTreeSet<String>,
}

// ---------------------------------------------------------------------------------------
// Rust tokens: enough of the lexer to skip comments and read string literals whole.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// A string literal's value, and the source line of each of its characters.
    Str(String, Vec<usize>),
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

fn tokenize(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if let Some((hashes, start)) = raw_string_start(&chars, i) {
            // r"..", r#".."#, br#".."#: no escapes, ends at a quote and as many hashes.
            let start_line = line;
            let mut text = String::new();
            let mut lines = Vec::new();
            i = start;
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|h| chars.get(i + 1 + h) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                text.push(chars[i]);
                lines.push(line);
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Str(text, lines),
                line: start_line,
            });
        } else if c == '"' || (c == 'b' && next == Some('"')) {
            let start_line = line;
            i += if c == 'b' { 2 } else { 1 };
            let mut text = String::new();
            let mut lines = Vec::new();
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    let escaped = chars.get(i + 1).copied().unwrap_or('\\');
                    i += 2;
                    let value = match escaped {
                        'n' => Some('\n'),
                        't' => Some('\t'),
                        'r' => Some('\r'),
                        '0' => Some('\0'),
                        '\n' => {
                            // A line continuation: the newline and the next line's indent go.
                            line += 1;
                            while i < chars.len() && chars[i].is_whitespace() {
                                if chars[i] == '\n' {
                                    line += 1;
                                }
                                i += 1;
                            }
                            None
                        }
                        'x' => {
                            i += 2;
                            Some('?')
                        }
                        'u' => {
                            while i < chars.len() && chars[i] != '}' {
                                i += 1;
                            }
                            i += 1;
                            Some('?')
                        }
                        other => Some(other),
                    };
                    if let Some(value) = value {
                        text.push(value);
                        lines.push(line);
                    }
                } else {
                    text.push(chars[i]);
                    lines.push(line);
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
            i += 1;
            tokens.push(Token {
                tok: Tok::Str(text, lines),
                line: start_line,
            });
        } else if c == '\'' {
            // A char literal ('a', '\n', '\'') or a lifetime ('a): only the first is skipped
            // whole.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                tokens.push(Token {
                    tok: Tok::Punct('\''),
                    line,
                });
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token {
                tok: Tok::Ident(chars[start..i].iter().collect()),
                line,
            });
        } else {
            tokens.push(Token {
                tok: Tok::Punct(c),
                line,
            });
            i += 1;
        }
    }
    tokens
}

/// At a raw string literal: its number of hashes and where its text starts.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    // Not the end of an identifier such as `for` or `bar`.
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

// ---------------------------------------------------------------------------------------
// One file's tokens, with the functions they define.

struct FnDef {
    name: String,
    /// Parameter names, `self` left out.
    params: Vec<String>,
    /// The token index of `fn`.
    start: usize,
    /// The token indices of its body's braces (none for a declaration).
    body: Option<(usize, usize)>,
}

struct Source {
    /// Relative to the workspace root, with `/`.
    file: String,
    tokens: Vec<Token>,
    fns: Vec<FnDef>,
    /// The identifiers of each `use` declaration.
    uses: Vec<Vec<String>>,
}

impl Source {
    fn new(file: &str, text: &str) -> Source {
        let tokens = tokenize(text);
        let mut fns = Vec::new();
        let mut uses = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            if token.tok == Tok::Ident("use".into()) {
                uses.push(
                    tokens[i + 1..]
                        .iter()
                        .take_while(|t| t.tok != Tok::Punct(';'))
                        .filter_map(|t| match &t.tok {
                            Tok::Ident(name) => Some(name.clone()),
                            _ => None,
                        })
                        .collect(),
                );
            }
            if token.tok != Tok::Ident("fn".into()) {
                continue;
            }
            let Some(Tok::Ident(name)) = tokens.get(i + 1).map(|t| &t.tok) else {
                continue;
            };
            // Skip generics up to the parameter list.
            let mut open = i + 2;
            let mut angle = 0;
            while let Some(t) = tokens.get(open) {
                match t.tok {
                    Tok::Punct('<') => angle += 1,
                    Tok::Punct('>') => angle -= 1,
                    Tok::Punct('(') if angle == 0 => break,
                    _ => {}
                }
                open += 1;
            }
            let args = split_args(&tokens, open);
            let params = args
                .iter()
                .filter_map(|&(a, b)| {
                    // The name: the last identifier before the first `:` at depth 0.
                    let colon = (a..b).find(|&k| is_punct(&tokens, k, ':'))?;
                    (a..colon).rev().find_map(|k| match &tokens[k].tok {
                        Tok::Ident(n) if n != "mut" && n != "self" => Some(n.clone()),
                        _ => None,
                    })
                })
                .collect();
            fns.push(FnDef {
                name: name.clone(),
                params,
                start: i,
                body: body_after(&tokens, closing(&tokens, open)),
            });
        }
        Source {
            file: file.to_owned(),
            tokens,
            fns,
            uses,
        }
    }

    /// The innermost function whose body holds token `i`.
    fn enclosing(&self, i: usize) -> Option<&FnDef> {
        self.fns
            .iter()
            .filter(|f| f.body.is_some_and(|(open, close)| open < i && i < close))
            .max_by_key(|f| f.start)
    }

    /// The module path other files call this file's functions by (`lab::run`): the
    /// file's name, or its folder's for a `mod.rs`.
    fn module(&self) -> Option<&str> {
        let path = Path::new(&self.file);
        let stem = path.file_stem()?.to_str()?;
        match stem {
            "main" | "lib" => None,
            // A folder's module file: the folder names the module (`lab/mod.rs` → `lab`).
            "mod" => path.parent()?.file_name()?.to_str(),
            stem => Some(stem),
        }
    }

    /// Whether a `use` brings `module`'s `name` into this file.
    fn imports(&self, module: Option<&str>, name: &str) -> bool {
        module.is_some_and(|module| {
            self.uses
                .iter()
                .any(|u| u.iter().any(|i| i == module) && u.iter().any(|i| i == name))
        })
    }

    fn str_at(&self, i: usize) -> Option<&str> {
        match self.tokens.get(i).map(|t| &t.tok) {
            Some(Tok::Str(s, _)) => Some(s),
            _ => None,
        }
    }

    fn ident_at(&self, i: usize) -> Option<&str> {
        match self.tokens.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(s)) => Some(s),
            _ => None,
        }
    }

    fn line(&self, i: usize) -> usize {
        self.tokens.get(i).map_or(0, |t| t.line)
    }

    /// The tokens `a..b` as one string without spaces, for [`KNOWN_EXPRESSIONS`].
    fn text(&self, a: usize, b: usize) -> String {
        self.tokens[a..b]
            .iter()
            .map(|t| match &t.tok {
                Tok::Ident(s) => s.clone(),
                Tok::Str(s, _) => format!("{s:?}"),
                Tok::Punct(c) => c.to_string(),
            })
            .collect()
    }
}

fn is_punct(tokens: &[Token], i: usize, c: char) -> bool {
    tokens.get(i).is_some_and(|t| t.tok == Tok::Punct(c))
}

/// The bracket closing the one opened at `open`.
fn closing(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        match token.tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

/// A function's body after its parameter list closes at `params_end`: the first `{` (past
/// the return type and where clause) and its `}`; none if a `;` comes first.
fn body_after(tokens: &[Token], params_end: usize) -> Option<(usize, usize)> {
    let open =
        (params_end + 1..tokens.len()).find(|&k| matches!(tokens[k].tok, Tok::Punct('{' | ';')))?;
    is_punct(tokens, open, '{').then(|| (open, closing(tokens, open)))
}

/// The arguments of the list opened at `open` (a `(` or `[`): token ranges split at
/// commas outside nested brackets.
fn split_args(tokens: &[Token], open: usize) -> Vec<(usize, usize)> {
    let mut args = Vec::new();
    let mut depth = 0;
    let mut start = open + 1;
    let mut i = open + 1;
    while i < tokens.len() {
        match tokens[i].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') if depth == 0 => {
                if i > start {
                    args.push((start, i));
                }
                break;
            }
            Tok::Punct(')' | ']' | '}') => depth -= 1,
            Tok::Punct(',') if depth == 0 => {
                args.push((start, i));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    args
}

/// The end of the expression starting at `a`: the next comma or closing bracket outside
/// nested brackets, or the end of the statement.
fn expr_end(tokens: &[Token], a: usize) -> usize {
    let mut depth = 0;
    let mut i = a;
    while i < tokens.len() {
        match tokens[i].tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') if depth == 0 => return i,
            Tok::Punct(')' | ']' | '}') => depth -= 1,
            Tok::Punct(',' | ';') if depth == 0 => return i,
            _ => {}
        }
        i += 1;
    }
    i
}

// ---------------------------------------------------------------------------------------
// Helpers found in pass one, used by every file in pass two.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Passes {
    /// The argument is a program.
    Program,
    /// The argument is a shell script.
    Script,
}

#[derive(Debug)]
struct Helper {
    file: String,
    module: Option<String>,
    name: String,
    /// Which argument, `self` not counted.
    position: usize,
    passes: Passes,
}

/// What an expression passed as a program or script is.
enum Value<'a> {
    /// A literal, or `format!`'s (then `true`), with the line of each character.
    Literal(&'a str, &'a [usize], bool),
    /// The enclosing function's parameter at this position.
    Param(usize),
    /// Literals a `for` loop binds the variable to.
    Each(Vec<(&'a str, usize)>),
    /// Something else: its text.
    Other(String),
}

fn value<'a>(src: &'a Source, a: usize, b: usize) -> Value<'a> {
    let mut a = a;
    while is_punct(&src.tokens, a, '&') {
        a += 1;
    }
    let tok = |i: usize| src.tokens.get(i).map(|t| &t.tok);
    // "lit" or format!("lit", ..)
    if let Some(Tok::Str(s, lines)) = tok(a)
        && a + 1 == b
    {
        return Value::Literal(s, lines, false);
    }
    if src.ident_at(a) == Some("format")
        && is_punct(&src.tokens, a + 1, '!')
        && is_punct(&src.tokens, a + 2, '(')
        && let Some(Tok::Str(s, lines)) = tok(a + 3)
    {
        return Value::Literal(s, lines, true);
    }
    if a + 1 == b
        && let Some(name) = src.ident_at(a)
    {
        if let Some(f) = src.enclosing(a)
            && let Some(position) = f.params.iter().position(|p| p == name)
        {
            return Value::Param(position);
        }
        let from = src.enclosing(a).map_or(0, |f| f.start);
        // for NAME in ["a", "b"]
        for k in (from..a).rev() {
            if src.ident_at(k) == Some("for")
                && src.ident_at(k + 1) == Some(name)
                && src.ident_at(k + 2) == Some("in")
                && is_punct(&src.tokens, k + 3, '[')
            {
                let items: Option<Vec<_>> = split_args(&src.tokens, k + 3)
                    .into_iter()
                    .map(|(x, y)| (y == x + 1).then(|| src.str_at(x).map(|s| (s, src.line(x))))?)
                    .collect();
                if let Some(items) = items {
                    return Value::Each(items);
                }
            }
            // let [mut] NAME = VALUE;
            let name_at = if src.ident_at(k + 1) == Some("mut") {
                k + 2
            } else {
                k + 1
            };
            if src.ident_at(k) == Some("let")
                && src.ident_at(name_at) == Some(name)
                && is_punct(&src.tokens, name_at + 1, '=')
            {
                let start = name_at + 2;
                let end = expr_end(&src.tokens, start);
                if let inner @ Value::Literal(..) = value(src, start, end) {
                    return inner;
                }
                break;
            }
        }
    }
    Value::Other(src.text(a, b))
}

/// The [`KNOWN_EXPRESSIONS`] entry for `text` in `file`, as `file expression`.
fn known_expression(file: &str, text: &str) -> Option<String> {
    KNOWN_EXPRESSIONS
        .iter()
        .find(|(f, e, _)| (*f == "*" || *f == file) && *e == text)
        .map(|(f, e, _)| format!("{f} {e}"))
}

struct Scan<'a> {
    src: &'a Source,
    found: &'a mut Found,
}

impl Scan<'_> {
    fn spawn(&mut self, line: usize, program: &str) {
        self.found.spawns.push(Spawn {
            file: self.src.file.clone(),
            line,
            program: program.to_owned(),
        });
    }

    fn unknown(&mut self, line: usize, what: String) {
        self.found.unknown.push(Unknown {
            file: self.src.file.clone(),
            line,
            what,
        });
    }

    /// A program given as the expression `a..b`.
    fn program(&mut self, a: usize, b: usize, context: &str) {
        let line = self.src.line(a);
        match value(self.src, a, b) {
            Value::Literal(s, ..) => self.spawn(line, s),
            Value::Each(items) => {
                for (s, line) in items {
                    self.spawn(line, s);
                }
            }
            // The helper's callers name the program.
            Value::Param(_) => {}
            Value::Other(text) => match known_expression(&self.src.file, &text) {
                Some(known) => {
                    self.found.known.insert(known);
                }
                None => self.unknown(
                    line,
                    format!("{context} runs `{text}`, which the scanner cannot name"),
                ),
            },
        }
    }

    /// A shell script given as the expression `a..b`.
    fn script(&mut self, a: usize, b: usize, context: &str) {
        let line = self.src.line(a);
        match value(self.src, a, b) {
            Value::Literal(text, lines, is_format) => {
                for (at, word) in script_commands(text, is_format) {
                    let line = lines.get(at).copied().unwrap_or(line);
                    if SH_BUILTINS.contains(&word.as_str()) {
                        continue;
                    }
                    if word.starts_with('{') {
                        match known_expression(&self.src.file, &word) {
                            Some(known) => {
                                self.found.known.insert(known);
                            }
                            None => self.unknown(
                                line,
                                format!("{context}: the script runs the format argument `{word}`"),
                            ),
                        }
                    } else if word.starts_with('$') {
                        self.unknown(
                            line,
                            format!("{context}: the script runs `{word}` from a variable"),
                        );
                    } else {
                        self.spawn(line, &word);
                    }
                }
            }
            Value::Param(_) => {}
            Value::Each(_) | Value::Other(_) => {
                let text = self.src.text(a, b);
                self.unknown(
                    line,
                    format!("{context}: a script `{text}` the scanner cannot read"),
                );
            }
        }
    }
}

/// Pass one: helpers whose parameter is a program or a script.
fn helpers(src: &Source) -> Vec<Helper> {
    let mut found = Vec::new();
    let mut add = |at: usize, position: usize, passes: Passes| {
        if let Some(f) = src.enclosing(at) {
            found.push(Helper {
                file: src.file.clone(),
                module: src.module().map(str::to_owned),
                name: f.name.clone(),
                position,
                passes,
            });
        }
    };
    let t = &src.tokens;
    for i in 0..t.len() {
        if let Some(open) = command_new(src, i) {
            let end = expr_end(t, open + 1);
            if let Value::Param(p) = value(src, open + 1, end) {
                add(i, p, Passes::Program);
            }
        }
        if let Some(start) = script_after(src, i) {
            let end = expr_end(t, start);
            if let Value::Param(p) = value(src, start, end) {
                add(i, p, Passes::Script);
            }
        }
    }
    found
}

/// At `Command::new(`: the index of its `(`.
fn command_new(src: &Source, i: usize) -> Option<usize> {
    let t = &src.tokens;
    (src.ident_at(i) == Some("Command")
        && is_punct(t, i + 1, ':')
        && is_punct(t, i + 2, ':')
        && src.ident_at(i + 3) == Some("new")
        && is_punct(t, i + 4, '('))
    .then_some(i + 4)
}

/// At a shell's name followed by `"-c"`: where the script expression starts.
fn script_after(src: &Source, i: usize) -> Option<usize> {
    let shell = src.str_at(i)?;
    if !SHELLS.contains(&shell) {
        return None;
    }
    let dash_c = (i + 1..i + 7).find(|&k| src.str_at(k) == Some("-c"))?;
    let t = &src.tokens;
    if is_punct(t, dash_c + 1, ',') {
        return Some(dash_c + 2);
    }
    // .arg("-c").arg(SCRIPT)
    (is_punct(t, dash_c + 1, ')')
        && is_punct(t, dash_c + 2, '.')
        && src.ident_at(dash_c + 3) == Some("arg")
        && is_punct(t, dash_c + 4, '('))
    .then_some(dash_c + 5)
}

/// Pass two: every program one file runs.
fn scan_source(src: &Source, helpers: &[Helper], found: &mut Found) {
    let mut scan = Scan { src, found };
    let t = &src.tokens;
    for i in 0..t.len() {
        if let Some(open) = command_new(src, i) {
            let end = expr_end(t, open + 1);
            scan.program(open + 1, end, "Command::new");
        }
        if let Some(shell) = src.str_at(i)
            && let Some(start) = script_after(src, i)
        {
            scan.spawn(src.line(i), shell);
            let end = expr_end(t, start);
            scan.script(start, end, &format!("`{shell} -c`"));
        }
        netns_exec(&mut scan, i);
        helper_call(&mut scan, helpers, i);
    }
}

/// `"netns", "exec", NS, PROG` (or `..., NS]).arg(PROG)`): `ip netns exec` runs PROG.
fn netns_exec(scan: &mut Scan<'_>, i: usize) {
    let src = scan.src;
    let t = &src.tokens;
    if !(src.str_at(i) == Some("netns")
        && is_punct(t, i + 1, ',')
        && src.str_at(i + 2) == Some("exec"))
    {
        return;
    }
    let line = src.line(i);
    if !is_punct(t, i + 3, ',') {
        scan.unknown(line, "`ip netns exec` without a namespace".into());
        return;
    }
    let ns_end = expr_end(t, i + 4);
    let program_at = if is_punct(t, ns_end, ',') {
        Some(ns_end + 1)
    } else if is_punct(t, ns_end, ']')
        && is_punct(t, ns_end + 1, ')')
        && is_punct(t, ns_end + 2, '.')
        && src.ident_at(ns_end + 3) == Some("arg")
        && is_punct(t, ns_end + 4, '(')
    {
        Some(ns_end + 5)
    } else {
        None
    };
    match program_at {
        Some(a) => {
            let b = expr_end(t, a);
            scan.program(a, b, "`ip netns exec`");
        }
        None => {
            let declared = src.enclosing(i).and_then(|f| {
                ARGV_HELPERS
                    .iter()
                    .find(|(file, name, _)| *file == src.file && *name == f.name)
            });
            if let Some((file, name, _)) = declared {
                scan.found.known.insert(format!("{file} {name}"));
            } else {
                scan.unknown(
                    line,
                    "`ip netns exec` of a program the scanner cannot find; list the function in ARGV_HELPERS".into(),
                );
            }
        }
    }
}

/// A call of a helper found in pass one, or of an [`ARGV_HELPERS`] method.
fn helper_call(scan: &mut Scan<'_>, helpers: &[Helper], i: usize) {
    let src = scan.src;
    let t = &src.tokens;
    let Some(name) = src.ident_at(i) else {
        return;
    };
    if !is_punct(t, i + 1, '(') || (i > 0 && src.ident_at(i - 1) == Some("fn")) {
        return;
    }
    let method = i > 0 && is_punct(t, i - 1, '.');
    let qualifier = (i >= 3 && is_punct(t, i - 1, ':') && is_punct(t, i - 2, ':'))
        .then(|| src.ident_at(i - 3))
        .flatten();
    let args = split_args(t, i + 1);
    if method {
        if ARGV_HELPERS.iter().any(|(_, n, _)| *n == name) {
            argv_call(scan, name, i, args.first().copied());
        }
        return;
    }
    for helper in helpers.iter().filter(|h| h.name == name) {
        let applies = match qualifier {
            Some(q) => helper.module.as_deref() == Some(q),
            None => helper.file == src.file || src.imports(helper.module.as_deref(), name),
        };
        if !applies {
            continue;
        }
        let context = format!("{name}(..)");
        match args.get(helper.position) {
            Some(&(a, b)) => match helper.passes {
                Passes::Program => scan.program(a, b, &context),
                Passes::Script => scan.script(a, b, &context),
            },
            None => scan.unknown(
                src.line(i),
                format!("{context} without its argument {}", helper.position + 1),
            ),
        }
    }
}

/// `.NAME(&["prog", ..])` of an [`ARGV_HELPERS`] method: the first element is the program.
fn argv_call(scan: &mut Scan<'_>, name: &str, i: usize, arg: Option<(usize, usize)>) {
    let src = scan.src;
    let t = &src.tokens;
    let Some((mut a, b)) = arg else {
        return;
    };
    while is_punct(t, a, '&') {
        a += 1;
    }
    if src.ident_at(a) == Some("vec") && is_punct(t, a + 1, '!') {
        a += 2;
    }
    let first = if is_punct(t, a, '[') {
        split_args(t, a).first().copied()
    } else {
        None
    };
    match first {
        Some((x, y)) => scan.program(x, y, &format!(".{name}(argv)")),
        None => {
            let text = src.text(a, b);
            scan.unknown(
                src.line(i),
                format!(".{name}({text}): a command line the scanner cannot read"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shell scripts.

/// The command words of a shell script, each with the index of its first character in
/// `script`'s characters. `format`: the script is a `format!` string (`{{` is a brace,
/// `{name}` an argument).
pub fn script_commands(script: &str, format: bool) -> Vec<(usize, String)> {
    let chars: Vec<char> = script.chars().collect();
    // Simple commands start after these; arithmetic `$((..))` and comments are no command.
    let mut starts = vec![0];
    let mut blank = vec![false; chars.len()];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let skip_to = if c == '$' && next == Some('(') && chars.get(i + 2) == Some(&'(') {
            let mut depth = 0;
            let mut end = i + 1;
            while end < chars.len() {
                match chars[end] {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                end += 1;
            }
            Some(end + 1)
        } else if c == '#' && prev.is_none_or(char::is_whitespace) {
            Some(
                (i..chars.len())
                    .find(|&k| chars[k] == '\n')
                    .unwrap_or(chars.len()),
            )
        } else {
            None
        };
        if let Some(end) = skip_to {
            let end = end.min(chars.len());
            blank[i..end].fill(true);
            i = end;
            continue;
        }
        let width = match (c, next) {
            ('&', Some('&')) | ('|', Some('|')) | ('$', Some('(')) => 2,
            ('&', _) if prev != Some('>') && next != Some('>') => 1,
            (';' | '\n' | '|' | '(' | '`', _) => 1,
            _ => 0,
        };
        if width > 0 {
            blank[i..i + width].fill(true);
            starts.push(i + width);
            i += width;
        } else {
            i += 1;
        }
    }
    starts.push(chars.len());

    let mut commands = Vec::new();
    for pair in starts.windows(2) {
        // The segment's words, each with where it starts.
        let mut words = Vec::new();
        let mut k = pair[0];
        while k < pair[1] {
            if blank[k] || chars[k].is_whitespace() {
                k += 1;
                continue;
            }
            let start = k;
            while k < pair[1] && !blank[k] && !chars[k].is_whitespace() {
                k += 1;
            }
            words.push((start, chars[start..k].iter().collect::<String>()));
        }
        if let Some(command) = command_word(&words, format) {
            commands.push(command);
        }
    }
    commands
}

/// The word of a simple command that names what runs: past keywords, assignments and
/// redirections; none for `for`/`case` headers.
fn command_word(words: &[(usize, String)], format: bool) -> Option<(usize, String)> {
    let mut words = words.iter();
    while let Some((at, word)) = words.next() {
        match word.as_str() {
            "if" | "then" | "else" | "elif" | "fi" | "do" | "done" | "while" | "until" | "!"
            | "{" | "}" | "time" => continue,
            "for" | "case" | "in" | "esac" => return None,
            _ => {}
        }
        let assignment = word.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        });
        if assignment {
            continue;
        }
        let redirection = word.trim_start_matches(|c: char| c.is_ascii_digit());
        if redirection.starts_with('>') || redirection.starts_with('<') {
            // `> file`: the file is the next word.
            if matches!(redirection, ">" | ">>" | "<") {
                words.next();
            }
            continue;
        }
        let mut command = word.trim_matches(|c| c == '"' || c == '\'').to_owned();
        if format {
            command = command.replace("{{", "{").replace("}}", "}");
        }
        return (!command.is_empty() && command != ")").then_some((*at, command));
    }
    None
}

// ---------------------------------------------------------------------------------------
// The workspace.

/// The sources of what the tests, the demo and the bench run, relative to `root`. Not
/// setup.rs: it is the installer, and runs only its own prerequisites (rustup, apt-get,
/// debconf, id, mount, sh) and what it installs (bpf-linker).
pub fn scanned_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    walk(&root.join("tests/src"), &mut files);
    walk(&root.join("tests/tests"), &mut files);
    walk(&root.join("monitor/src/lab"), &mut files);
    if let Ok(entries) = std::fs::read_dir(root.join("xtask/src")) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_some_and(|n| n != "setup.rs")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Scans `(file, text)` pairs: helpers are found in all of them first, then each is read.
pub fn scan(sources: &[(String, String)]) -> Found {
    let sources: Vec<Source> = sources.iter().map(|(f, t)| Source::new(f, t)).collect();
    let helpers: Vec<Helper> = sources.iter().flat_map(helpers).collect();
    let mut found = Found::default();
    for src in &sources {
        scan_source(src, &helpers, &mut found);
    }
    found.spawns.sort();
    found.spawns.dedup();
    found.unknown.sort();
    found.unknown.dedup();
    found
}

/// What is wrong with `tools` (setup's list) for what `found` runs: each program run but
/// not listed (with where), each spawn the scanner could not name, and each listed command
/// nothing runs.
pub fn problems(found: &Found, tools: &[(&str, &str)]) -> Vec<String> {
    let listed: BTreeSet<&str> = tools.iter().map(|(c, _)| *c).collect();
    let exempt: BTreeSet<&str> = NOT_INSTALLED_BY_SETUP.iter().map(|(c, _)| *c).collect();
    let mut problems = Vec::new();
    for spawn in &found.spawns {
        if !listed.contains(spawn.program.as_str()) && !exempt.contains(spawn.program.as_str()) {
            problems.push(format!(
                "{}:{}: runs `{}`, which setup's TOOLS (xtask/src/setup.rs) does not list",
                spawn.file, spawn.line, spawn.program
            ));
        }
    }
    for unknown in &found.unknown {
        problems.push(format!(
            "{}:{}: {} (name it with a literal, or add it to KNOWN_EXPRESSIONS in xtask/src/spawned.rs)",
            unknown.file, unknown.line, unknown.what
        ));
    }
    let run: BTreeSet<&str> = found.spawns.iter().map(|s| s.program.as_str()).collect();
    for (command, package) in tools {
        // Files (ieee-data) are checked for, not run.
        if !command.starts_with('/') && !run.contains(command) {
            problems.push(format!(
                "setup's TOOLS lists `{command}` ({package}), which nothing scanned runs"
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(files: &[(&str, &str)]) -> Found {
        let sources: Vec<(String, String)> = files
            .iter()
            .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
            .collect();
        scan(&sources)
    }

    fn programs(found: &Found) -> Vec<(String, usize, String)> {
        found
            .spawns
            .iter()
            .map(|s| (s.file.clone(), s.line, s.program.clone()))
            .collect()
    }

    fn at(file: &str, line: usize, program: &str) -> (String, usize, String) {
        (file.to_owned(), line, program.to_owned())
    }

    #[test]
    fn literal_programs_are_found_and_comments_and_strings_are_not() {
        let f = found(&[(
            "t.rs",
            "fn a() {\n    // Command::new(\"ghost\")\n    let s = \"Command::new(\\\"ghost\\\")\";\n    /* Command::new(\"ghost\") */\n    std::process::Command::new(\"tshark\").arg(r#\"x\"#);\n    let c = 'x';\n}\n",
        )]);
        assert_eq!(programs(&f), vec![at("t.rs", 5, "tshark")]);
        assert!(f.unknown.is_empty(), "{:?}", f.unknown);
    }

    #[test]
    fn a_helpers_callers_name_the_program_in_its_file_or_by_module() {
        let f = found(&[
            (
                "monitor/src/lab/mod.rs",
                "pub fn run(program: &str, args: &[&str]) {\n    Command::new(program).args(args);\n}\nfn f() { run(\"ip\", &[]); }\nfn g(x: u8) { self.ward.run(move || 1); }\n",
            ),
            (
                "tests/tests/x.rs",
                "fn t() {\n    monitor::lab::run(\"nft\", &[\"-f\"]);\n    cmd::run(Command::new(\"ethtool\"));\n    run(\"not-lab\");\n    lab::run(program_name, &[]);\n}\n",
            ),
        ]);
        assert_eq!(
            programs(&f),
            vec![
                at("monitor/src/lab/mod.rs", 4, "ip"),
                at("tests/tests/x.rs", 2, "nft"),
                at("tests/tests/x.rs", 3, "ethtool"),
            ]
        );
        assert_eq!(f.unknown.len(), 1, "{:?}", f.unknown);
        assert_eq!(f.unknown[0].line, 5);
        assert!(
            f.unknown[0].what.contains("program_name"),
            "{:?}",
            f.unknown
        );
    }

    #[test]
    fn an_unnamed_program_is_unknown_unless_listed() {
        let f = found(&[(
            "tests/tests/y.rs",
            "fn t(dir: &Path) {\n    Command::new(dir.join(\"tool\"));\n    Command::new(monitor_bin());\n    for tool in [\"tshark\", \"editcap\"] {\n        Command::new(tool);\n    }\n}\n",
        )]);
        assert_eq!(
            programs(&f),
            vec![
                at("tests/tests/y.rs", 4, "editcap"),
                at("tests/tests/y.rs", 4, "tshark"),
            ]
        );
        assert_eq!(f.unknown.len(), 1, "{:?}", f.unknown);
        assert_eq!(f.unknown[0].line, 2);
        assert!(f.unknown[0].what.contains("dir.join(\"tool\")"));
    }

    #[test]
    fn shell_scripts_are_read_through_helpers_lets_and_format() {
        let f = found(&[(
            "tests/tests/faults.rs",
            r####"fn sh(script: &str) -> Output {
    Command::new("sh").arg("-c").arg(script).output()
}
fn t() {
    sh(&format!(
        "bpftool map create {p} && bpftool map update pinned {p}",
        p = 1
    ));
    let script = format!(
        r#"set -u
while [ "$(stat -f -c %T /x)" = bpf_fs ]; do umount /x || exit 3; n=$((n+1)); done
{bin} run >/dev/null 2>{state}/log &
kill -0 $pid 2>/dev/null; wait $pid; sleep 0.1
"#,
        bin = monitor_bin().display(),
    );
    Command::new("unshare").args(["-m", "sh", "-c", &script]);
    sh(&name);
}
"####,
        )]);
        let file = "tests/tests/faults.rs";
        assert_eq!(
            programs(&f),
            vec![
                at(file, 2, "sh"),
                at(file, 6, "bpftool"),
                at(file, 11, "stat"),
                at(file, 11, "umount"),
                at(file, 13, "sleep"),
                at(file, 17, "sh"),
                at(file, 17, "unshare"),
            ]
        );
        // `sh(&name)`: a script the scanner cannot read.
        assert_eq!(f.unknown.len(), 1, "{:?}", f.unknown);
        assert_eq!(f.unknown[0].line, 18);
    }

    #[test]
    fn script_commands_skip_builtins_keywords_assignments_and_redirections() {
        let words: Vec<String> = script_commands(
            "A=1 B=2 env x; if [ -e f ]; then echo \"$(date -u)\" | tr a b; fi\nfor x in a b; do 2>/dev/null ls \"$x\"; done # ping\n`uname` && cat <f || true & exit",
            false,
        )
        .into_iter()
        .map(|(_, w)| w)
        .collect();
        assert_eq!(
            words,
            [
                "env", "[", "echo", "date", "tr", "ls", "uname", "cat", "true", "exit"
            ]
        );
    }

    #[test]
    fn ip_netns_exec_and_argv_helpers_name_their_program() {
        let f = found(&[
            (
                "monitor/src/lab/mod.rs",
                "impl NetNs {\n    pub fn exec(&self, args: &[&str]) {\n        let mut full = vec![\"netns\", \"exec\", self.name.as_str()];\n        run(\"ip\", &full)\n    }\n}\npub fn run(program: &str, args: &[&str]) { Command::new(program); }\n",
            ),
            (
                "tests/tests/z.rs",
                "fn t() {\n    router.exec(&[\"sysctl\", \"-w\"]);\n    router.exec(&argv);\n    Command::new(\"ip\").args([\"netns\", \"exec\", ns.name()]).arg(monitor_bin());\n    Command::new(\"ip\").args([\"netns\", \"exec\", &name, \"ping\", \"-c1\"]);\n}\n",
            ),
        ]);
        assert_eq!(
            programs(&f),
            vec![
                at("monitor/src/lab/mod.rs", 4, "ip"),
                at("tests/tests/z.rs", 2, "sysctl"),
                at("tests/tests/z.rs", 4, "ip"),
                at("tests/tests/z.rs", 5, "ip"),
                at("tests/tests/z.rs", 5, "ping"),
            ]
        );
        assert_eq!(f.unknown.len(), 1, "{:?}", f.unknown);
        assert_eq!(f.unknown[0].line, 3);
    }

    #[test]
    fn the_check_names_what_is_missing_where_and_what_is_stale() {
        let f = found(&[(
            "tests/tests/faults.rs",
            "fn t() {\n    Command::new(\"sh\").args([\"-c\", \"bpftool map show\"]);\n    Command::new(\"tshark\");\n}\n",
        )]);
        let problems = problems(
            &f,
            &[
                ("sh", "dash"),
                ("tshark", "tshark"),
                ("ping", "iputils-ping"),
                ("/usr/share/ieee-data/oui.csv", "ieee-data"),
            ],
        );
        assert_eq!(
            problems,
            vec![
                "tests/tests/faults.rs:2: runs `bpftool`, which setup's TOOLS (xtask/src/setup.rs) does not list".to_owned(),
                "setup's TOOLS lists `ping` (iputils-ping), which nothing scanned runs".to_owned(),
            ]
        );
    }

    /// The check itself: setup installs every program the tests, the lab, the demo and the
    /// bench run, and lists nothing else.
    #[test]
    fn setup_installs_every_program_the_tests_the_demo_and_the_bench_run() {
        let root = crate::cmd::workspace_root();
        let sources: Vec<(String, String)> = scanned_files(&root)
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                let name = path
                    .strip_prefix(&root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                (name, text)
            })
            .collect();
        assert!(
            sources.iter().any(|(f, _)| f == "tests/tests/faults.rs")
                && sources
                    .iter()
                    .any(|(f, _)| f == "tests/src/bin/monitor-bench.rs")
                && sources.iter().any(|(f, _)| f == "xtask/src/bench.rs"),
            "the scan misses files: {:?}",
            sources.iter().map(|(f, _)| f).collect::<Vec<_>>()
        );
        let found = scan(&sources);
        let mut problems = problems(&found, crate::setup::TOOLS);
        let declared = KNOWN_EXPRESSIONS
            .iter()
            .map(|(file, expression, _)| format!("{file} {expression}"))
            .chain(
                ARGV_HELPERS
                    .iter()
                    .map(|(file, name, _)| format!("{file} {name}")),
            );
        for entry in declared {
            if !found.known.contains(&entry) {
                problems.push(format!(
                    "xtask/src/spawned.rs declares `{entry}`, which nothing scanned uses any more"
                ));
            }
        }
        assert!(
            problems.is_empty(),
            "{} problem(s) with setup's TOOLS:\n  {}\nprograms found:\n  {}",
            problems.len(),
            problems.join("\n  "),
            found
                .spawns
                .iter()
                .map(|s| format!("{}:{}: {}", s.file, s.line, s.program))
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}
