//! Strict JSONC parsing: JSON plus comments and trailing commas, nothing looser.
//!
//! `jsonc-parser` tolerates more than JSONC (e.g. missing commas between properties), which would let a
//! typo silently change meaning. So the text is tokenised with it, comments and trailing commas are
//! blanked out in place (positions unchanged), and the result is parsed by serde_json, whose errors
//! carry exact line and column numbers.

use jsonc_parser::tokens::Token;
use jsonc_parser::{CollectOptions, CommentCollectionStrategy, ParseOptions};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsoncError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for JsoncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}: {}", self.line, self.column, self.message)
    }
}

/// Parses JSONC text. Empty text (or only comments) is `Ok(None)`.
pub fn parse(text: &str) -> Result<Option<Value>, JsoncError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let opts = ParseOptions { allow_comments: true, allow_loose_object_property_names: false, allow_trailing_commas: true };
    let collect = CollectOptions { comments: CommentCollectionStrategy::AsTokens, tokens: true };
    let parsed = jsonc_parser::parse_to_ast(text, &collect, &opts).map_err(|e| JsoncError {
        line: e.line_display(),
        column: e.column_display(),
        message: e.kind().to_string(),
    })?;
    if parsed.value.is_none() {
        return Ok(None);
    }
    let tokens = parsed.tokens.unwrap_or_default();
    let mut bytes = text.as_bytes().to_vec();
    let blank = |bytes: &mut Vec<u8>, start: usize, end: usize| {
        for b in &mut bytes[start..end] {
            if *b != b'\n' && *b != b'\r' {
                *b = b' ';
            }
        }
    };
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::CommentLine(_) | Token::CommentBlock(_) => blank(&mut bytes, t.range.start, t.range.end),
            Token::Comma => {
                let next = tokens[i + 1..]
                    .iter()
                    .find(|n| !matches!(n.token, Token::CommentLine(_) | Token::CommentBlock(_)));
                if matches!(next.map(|n| &n.token), Some(Token::CloseBrace | Token::CloseBracket)) {
                    blank(&mut bytes, t.range.start, t.range.end);
                }
            }
            _ => {}
        }
    }
    // Blanking only replaced ASCII bytes inside comments/commas with spaces, except that a comment may
    // hold multi-byte characters: every byte of it became a space, which is still valid UTF-8.
    let cleaned = String::from_utf8(bytes).map_err(|_| JsoncError { line: 1, column: 1, message: "invalid UTF-8".into() })?;
    serde_json::from_str(&cleaned).map(Some).map_err(|e| JsoncError {
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn comments_and_trailing_commas_are_fine() {
        let v = parse("{\n // c\n \"a\": [1, 2,], /* b\n c */ \"é\": \"x\", // end\n}\n").unwrap().unwrap();
        assert_eq!(v, json!({"a": [1, 2], "é": "x"}));
    }

    #[test]
    fn missing_comma_is_an_error_with_position() {
        let e = parse("{\n  \"a\": 1\n  \"b\": 2\n}").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("expected"), "{e}");
    }

    #[test]
    fn loose_keys_and_garbage_are_errors() {
        assert!(parse("{ a: 1 }").is_err());
        assert!(parse("{ \"a\": 1 } x").is_err());
        assert!(parse("{ \"a\": }").is_err());
    }

    #[test]
    fn empty_is_none() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("  // only a comment\n").unwrap(), None);
    }
}
