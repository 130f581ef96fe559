//! Positions in the inventory text: byte spans to `LINE:COL`, and the span of a key path
//! such as `check[2].url` or `env.prod.vm.memory`, so that errors found after parsing point
//! at the same place a parse error would.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted/indexed key path as written in error messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn key(mut self, k: impl Into<String>) -> KeyPath {
        self.0.push(Seg::Key(k.into()));
        self
    }
    pub fn index(mut self, i: usize) -> KeyPath {
        self.0.push(Seg::Index(i));
        self
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset; offsets past the end or inside
/// a character clamp to the nearest valid place so a bad span never panics.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// The span of the deepest node on `path` that exists in `doc`: the value at the end of the
/// path when it exists, else the closest ancestor (a missing key is reported at its table).
pub(crate) fn locate<S>(doc: &ImDocument<S>, path: &KeyPath) -> Option<Range<usize>> {
    let mut node = Node::Table(doc.as_table());
    let mut best = None;
    for seg in &path.0 {
        let (next, key_span) = match (node, seg) {
            (Node::Table(t), Seg::Key(k)) => (
                t.get(k).and_then(Node::item),
                t.key(k).and_then(|k| k.span()),
            ),
            (Node::Inline(t), Seg::Key(k)) => {
                (t.get(k).map(Node::Value), t.key(k).and_then(|k| k.span()))
            }
            (Node::Tables(a), Seg::Index(i)) => (a.get(*i).map(Node::Table), None),
            (Node::Value(Value::Array(a)), Seg::Index(i)) => (a.get(*i).map(Node::Value), None),
            _ => (None, None),
        };
        let Some(next) = next else { break };
        // Implicit parent tables (`env` in `[env.prod]`) have no span: fall back to the key.
        best = next.span().or(key_span).or(best);
        node = next;
    }
    best
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Table(&'a Table),
    Inline(&'a toml_edit::InlineTable),
    Tables(&'a toml_edit::ArrayOfTables),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn item(item: &'a Item) -> Option<Node<'a>> {
        match item {
            Item::None => None,
            Item::Table(t) => Some(Node::Table(t)),
            Item::ArrayOfTables(a) => Some(Node::Tables(a)),
            Item::Value(Value::InlineTable(t)) => Some(Node::Inline(t)),
            Item::Value(v) => Some(Node::Value(v)),
        }
    }
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Table(t) => t.span(),
            Node::Inline(t) => t.span(),
            Node::Tables(a) => a.span(),
            Node::Value(v) => v.span(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, path: KeyPath) -> (usize, usize) {
        let doc = ImDocument::parse(text).unwrap();
        let span = locate(&doc, &path).expect("located");
        line_col(text, span.start)
    }

    #[test]
    fn line_col_counts_characters_and_clamps() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 1), (1, 1));
        assert_eq!(line_col("ab", 99), (1, 3));
    }

    #[test]
    fn locates_values_tables_and_arrays() {
        let text = "a = 1\n[env.prod]\nvm = { cpus = 8, memory = \"x\" }\n[[check]]\nname = \"a\"\n[[check]]\nname = \"b\"\nurl = \"u\"\n";
        let p = KeyPath::default();
        assert_eq!(
            at(
                text,
                p.clone().key("env").key("prod").key("vm").key("memory")
            ),
            (3, 27)
        );
        assert_eq!(at(text, p.clone().key("check").index(1).key("url")), (8, 7));
        // A missing key is reported at the deepest table that exists.
        assert_eq!(at(text, p.clone().key("check").index(1).key("nope")).0, 6);
        assert_eq!(at(text, p.key("env").key("prod").key("missing")).0, 2);
    }

    #[test]
    fn displays_like_serde_path_to_error() {
        let p = KeyPath::default().key("check").index(2).key("url");
        assert_eq!(p.to_string(), "check[2].url");
    }
}
