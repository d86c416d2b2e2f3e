//! Flink's lexical rules on top of sqlparser's tokenizer, and a cursor over
//! the tokens that refuses with a line and column.
//!
//! Why not `sqlparser::Parser::parse_statements`: its `Statement` AST has no
//! room for `CREATE MODEL ... INPUT (...) OUTPUT (...)`, nor for
//! ML_PREDICT's `TABLE t`, `MODEL m`, `DESCRIPTOR(c)` and `MAP[...]`
//! arguments (a dialect's `parse_statement` hook must return a
//! `Statement`), and Flink's `ROW<...>` column types. The statement grammar
//! we accept is four small forms, so it is a recursive descent over
//! sqlparser's tokens; the lexing (quoting, `''` escapes, `--` and `/* */`
//! comments, backquoted identifiers, locations) is sqlparser's, unchanged.

use sqlparser::dialect::Dialect;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::{Loc, SqlError};

/// Flink SQL's lexical conventions: backquoted identifiers, no double-quoted
/// ones (Flink has none), `''` inside strings.
#[derive(Debug, Default)]
pub(crate) struct FlinkDialect;

impl Dialect for FlinkDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '$'
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }
}

/// An identifier or a string as written, with where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Spanned {
    pub text: String,
    pub loc: Loc,
}

pub(crate) struct Cursor {
    tokens: Vec<TokenWithSpan>,
    pos: usize,
    /// A `>>` token split in two by `ARRAY<ROW<...>>`: one `>` left.
    pending_gt: Option<Loc>,
}

fn loc_of(t: &TokenWithSpan) -> Loc {
    Loc {
        line: t.span.start.line as usize,
        column: t.span.start.column as usize,
    }
}

impl Cursor {
    pub fn new(sql: &str) -> Result<Cursor, SqlError> {
        let tokens = Tokenizer::new(&FlinkDialect, sql)
            .tokenize_with_location()
            .map_err(|e| SqlError::Refused {
                loc: Loc {
                    line: e.location.line as usize,
                    column: e.location.column as usize,
                },
                message: e.message,
            })?;
        let tokens = tokens
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect();
        Ok(Cursor {
            tokens,
            pos: 0,
            pending_gt: None,
        })
    }

    pub fn peek(&self) -> &Token {
        self.tokens.get(self.pos).map_or(&Token::EOF, |t| &t.token)
    }

    /// Where the next token starts (the end of the text at the end).
    pub fn loc(&self) -> Loc {
        if let Some(loc) = self.pending_gt {
            return loc;
        }
        match self.tokens.get(self.pos) {
            Some(t) => loc_of(t),
            None => self
                .tokens
                .last()
                .map_or(Loc { line: 1, column: 1 }, |t| Loc {
                    line: t.span.end.line as usize,
                    column: t.span.end.column as usize,
                }),
        }
    }

    pub fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    /// Step back over the token just taken.
    pub fn rewind(&mut self) {
        self.pos -= 1;
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.tokens.len() || *self.peek() == Token::EOF
    }

    /// A refusal at the next token.
    pub fn refuse<T>(&self, message: impl Into<String>) -> Result<T, SqlError> {
        Err(SqlError::Refused {
            loc: self.loc(),
            message: message.into(),
        })
    }

    /// What the next token is, for messages.
    pub fn found(&self) -> String {
        match self.peek() {
            Token::EOF => "the end of the script".into(),
            Token::SingleQuotedString(s) => format!("'{s}'"),
            t => format!("`{t}`"),
        }
    }

    /// The next token, if it is the unquoted word `word` (any case).
    pub fn eat_word(&mut self, word: &str) -> bool {
        if self
            .peek_word()
            .is_some_and(|w| w.eq_ignore_ascii_case(word))
        {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub fn expect_word(&mut self, word: &str) -> Result<(), SqlError> {
        if self.eat_word(word) {
            Ok(())
        } else {
            self.refuse(format!("expected {word}, found {}", self.found()))
        }
    }

    /// The next token's text, upper-cased, if it is an unquoted word.
    pub fn peek_word(&self) -> Option<String> {
        match self.peek() {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            _ => None,
        }
    }

    pub fn eat(&mut self, token: &Token) -> bool {
        if token == &Token::Gt && self.pending_gt.take().is_some() {
            return true;
        }
        if self.pending_gt.is_none() && self.peek() == token {
            self.pos += 1;
            return true;
        }
        if token == &Token::Gt && self.pending_gt.is_none() && *self.peek() == Token::ShiftRight {
            let mut loc = self.loc();
            loc.column += 1;
            self.pos += 1;
            self.pending_gt = Some(loc);
            return true;
        }
        false
    }

    pub fn expect(&mut self, token: &Token) -> Result<(), SqlError> {
        if self.eat(token) {
            Ok(())
        } else {
            self.refuse(format!("expected `{token}`, found {}", self.found()))
        }
    }

    /// An identifier: a word, or a backquoted name (kept as written).
    pub fn ident(&mut self, what: &str) -> Result<Spanned, SqlError> {
        let loc = self.loc();
        match self.peek().clone() {
            Token::Word(w) => {
                self.pos += 1;
                if self.peek() == &Token::Period {
                    return Err(SqlError::Refused {
                        loc,
                        message: format!(
                            "qualified names (catalog.database.{}) are not supported; use a plain name",
                            w.value
                        ),
                    });
                }
                Ok(Spanned { text: w.value, loc })
            }
            _ => self.refuse(format!("expected {what}, found {}", self.found())),
        }
    }

    /// A string literal (`'...'`).
    pub fn string(&mut self, what: &str) -> Result<Spanned, SqlError> {
        let loc = self.loc();
        match self.peek().clone() {
            Token::SingleQuotedString(s) => {
                self.pos += 1;
                Ok(Spanned { text: s, loc })
            }
            _ => self.refuse(format!(
                "expected {what} as a quoted string, found {}",
                self.found()
            )),
        }
    }

    /// A string literal, or a number or boolean literal as its text (MAP
    /// values such as `MAP['timeout', 10]`).
    pub fn literal(&mut self, what: &str) -> Result<Spanned, SqlError> {
        let loc = self.loc();
        match self.peek().clone() {
            Token::Number(n, _) => {
                self.pos += 1;
                Ok(Spanned { text: n, loc })
            }
            Token::Word(w)
                if w.quote_style.is_none()
                    && (w.value.eq_ignore_ascii_case("true")
                        || w.value.eq_ignore_ascii_case("false")) =>
            {
                self.pos += 1;
                Ok(Spanned {
                    text: w.value.to_ascii_lowercase(),
                    loc,
                })
            }
            _ => self.string(what),
        }
    }

    /// The end of a statement: `;` or the end of the script.
    pub fn end_statement(&mut self, construct: &str) -> Result<(), SqlError> {
        if self.eat(&Token::SemiColon) || self.at_end() {
            return Ok(());
        }
        let what = match self.peek_word() {
            Some(w) => format!("`{w}`"),
            None => self.found(),
        };
        self.refuse(format!(
            "{what} after {construct} is not supported (expected `;`)"
        ))
    }
}
