//! The rule for the names people give themselves and their devices, and how text that came
//! from other devices is made safe to print.
//!
//! A name is shown next to ids (printed as lowercase hex, 64 characters, tables show the first
//! 12) and found by the same commands that take an id prefix, so a name must never pass for an
//! id. The rule, [`check_name`]: a name is 1 to [`MAX_NAME_CHARS`] characters, has no space at
//! either end, holds no control, bidi or invisible character ([`is_hidden_char`]), and is not
//! made only of hex digits or characters that look like them (Cyrillic `а`, fullwidth `０`,
//! mathematical `𝟎`, Latin `O`/`l`…) when there are [`MIN_ID_PREFIX`] or more of them — the
//! shortest text the commands take as an id prefix ([`is_id_prefix`]). So "Ebba" (4 hex letters)
//! is a fine name, "Deface" or "c0ffee12" is not.
//!
//! Every device applies the rule to the names it makes; the membership log's evaluation applies
//! it to names from others. Text that is not a name (captions, tags, titles, file names) may hold
//! anything; [`escape_hidden`] shows its hidden characters as escapes before a terminal sees it.

use std::borrow::Cow;

use crate::membership::OpBody;

/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// The fewest hex digits the commands take as a prefix of an id; a name may not look like this
/// many hex digits.
pub const MIN_ID_PREFIX: usize = 6;

/// The longest id, in hex digits (32 bytes).
const ID_HEX_CHARS: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("a name must not be empty")]
    Empty,
    #[error("a name must not start or end with a space")]
    SurroundingSpace,
    #[error("a name is at most {MAX_NAME_CHARS} characters; this one has {0}")]
    TooLong(usize),
    #[error(
        "a name must not hold control, bidi or invisible characters; character {position} is U+{code:04X}"
    )]
    Hidden { position: usize, code: u32 },
    #[error(
        "{0:?} looks like an id (only hex digits or characters that look like them); add a letter such as g–z or a space"
    )]
    LooksLikeId(String),
}

/// Checks a person's or device's name against the rule in this module's docs.
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.trim().is_empty() {
        return Err(NameError::Empty);
    }
    let count = name.chars().count();
    if count > MAX_NAME_CHARS {
        return Err(NameError::TooLong(count));
    }
    if let Some((position, c)) = name.chars().enumerate().find(|(_, c)| is_hidden_char(*c)) {
        return Err(NameError::Hidden {
            position: position + 1,
            code: c as u32,
        });
    }
    if name.trim() != name {
        return Err(NameError::SurroundingSpace);
    }
    if looks_like_hex(name) {
        return Err(NameError::LooksLikeId(name.to_owned()));
    }
    Ok(())
}

/// Checks every name `body` gives a person or a device against [`check_name`]. The membership
/// log's evaluation skips an op that fails (`membership::apply`), so a name that came from
/// another device (in an op it signed, or a joiner's, recorded by its inviter) is held to the
/// rule as one typed here. The root's names are its founder's own and are not checked: a log
/// without its root cannot be read at all.
pub fn check_op_names(body: &OpBody) -> Result<(), NameError> {
    match body {
        OpBody::AddPerson { name, .. } | OpBody::RenamePerson { name, .. } => check_name(name),
        OpBody::AddDevice { device_name, .. } => check_name(device_name),
        _ => Ok(()),
    }
}

/// Whether the commands take `text` as a prefix of an id rather than a name: at least
/// [`MIN_ID_PREFIX`] and at most 64 ASCII hex digits, surrounding spaces ignored, any case.
pub fn is_id_prefix(text: &str) -> bool {
    let text = text.trim();
    (MIN_ID_PREFIX..=ID_HEX_CHARS).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A character a terminal does not show as itself: C0 and C1 controls (ANSI escape sequences
/// start with one), bidi embeddings, overrides and isolates (U+202E turns text around), and the
/// invisible formatting characters (zero-width space, word joiner, BOM, tag characters…).
/// The zero-width joiner and variation selectors are not in the set: emoji are made with them.
pub fn is_hidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'
                | '\u{200C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// `text` with every [hidden character](is_hidden_char) written as a Rust-style escape
/// (`\u{1b}`, `\r`, `\u{202e}`), for printing text that came from another device on a terminal.
pub fn escape_hidden(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_hidden_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Whether `name` shows as [`MIN_ID_PREFIX`] or more hex digits and nothing else: each
/// character is a hex digit or looks like one, or is drawn onto the one before it (combining
/// marks, joiners, variation selectors).
fn looks_like_hex(name: &str) -> bool {
    let mut digits = 0;
    for c in name.chars() {
        if is_drawn_onto_previous(c) {
            continue;
        }
        if !looks_like_hex_digit(c) {
            return false;
        }
        digits += 1;
    }
    digits >= MIN_ID_PREFIX
}

fn is_drawn_onto_previous(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{200D}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// A hex digit (any case), or a character drawn like one: a digit of any script, the fullwidth
/// and mathematical forms, and the letters of other scripts that fonts draw as `a`–`f`, `0`, `1`
/// (after Unicode's confusables list, UTS #39).
fn looks_like_hex_digit(c: char) -> bool {
    if c.is_ascii_hexdigit() || c.is_numeric() {
        return true;
    }
    let code = c as u32;
    // Fullwidth A–F and a–f.
    if (0xFF21..=0xFF26).contains(&code) || (0xFF41..=0xFF46).contains(&code) {
        return true;
    }
    // Mathematical alphanumerics: 52-letter alphabets (A–Z, a–z) in 13 styles.
    if (0x1D400..=0x1D6A3).contains(&code) {
        let letter = (code - 0x1D400) % 52 % 26;
        return letter < 6 || letter == 8 || letter == 11 || letter == 14;
    }
    matches!(
        c,
        // 0 and 1 in Latin letters.
        'O' | 'o' | 'I' | 'l' | 'ǀ' | 'Ι' | 'І' | 'Ӏ' | 'ι' | 'ℓ' | 'Ⅰ' | 'ⅰ'
        // a, A
        | 'а' | 'ɑ' | 'α' | '⍺' | 'А' | 'Α' | 'Ꭺ' | 'ᗅ' | 'ꓮ' | 'ᴀ'
        // b, B
        | 'Ƅ' | 'Ь' | 'Ꮟ' | 'ᑲ' | 'Β' | 'В' | 'Ᏼ' | 'ᗷ' | 'ꓐ' | 'ʙ'
        // c, C
        | 'с' | 'ϲ' | 'ᴄ' | 'ⅽ' | 'ⲥ' | 'С' | 'Ϲ' | 'Ꮯ' | 'Ⅽ' | 'Ⲥ' | 'ꓚ'
        // d, D
        | 'ԁ' | 'Ꮷ' | 'ᑯ' | 'ⅾ' | 'ꓒ' | 'Ꭰ' | 'ᗪ' | 'Ⅾ' | 'ꓓ'
        // e, E
        | 'е' | 'ҽ' | '℮' | 'ℯ' | 'ⅇ' | 'Ε' | 'Е' | 'Ꭼ' | 'ⴹ' | 'ꓰ'
        // f, F
        | 'ſ' | 'ẝ' | 'ք' | 'Ϝ' | 'ᖴ' | 'ꓝ'
        // 0
        | 'Ο' | 'ο' | 'О' | 'о' | 'Օ' | 'օ' | 'ס' | 'ᴏ' | 'Ⲟ' | 'ⲟ' | 'ℴ'
        // 2, 3, 5, 6, 8, 9 drawn as letters
        | 'Ƨ' | 'ᒿ' | 'Ʒ' | 'З' | 'з' | 'Ꝫ' | 'Ƽ' | 'б' | 'Ꮾ' | 'Ȣ' | 'ȣ' | 'Ꝯ' | 'ꝯ'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for name in [
            "Ana",
            "Ebba",
            "Abe",
            "Bea",
            "Grandma's tablet",
            "Ana's laptop",
            "device 2",
            "José",
            "Zoë",
            "李雷",
            "Мария",
            "Mum 👩‍👧",
            "❤️ phone",
            "2024 camera",
            "café 01",
            "Deface me",
        ] {
            assert_eq!(check_name(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn names_that_pass_for_ids_are_refused() {
        for name in [
            "deadbeef",
            "DEADBEEF",
            "c0ffee12",
            "Deface",
            "123456",
            "3f9a2b1c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8",
            // Cyrillic а, е, с among ASCII hex.
            "d\u{0435}\u{0430}db\u{0435}\u{0435}f",
            "\u{0441}0ff\u{0435}\u{0435}",
            // Latin O and l for 0 and 1.
            "cOffee1l",
            // Fullwidth digits and letters.
            "\u{FF11}\u{FF12}\u{FF13}\u{FF41}\u{FF42}\u{FF43}",
            // Mathematical bold digits and italic a.
            "\u{1D7CE}\u{1D7CF}\u{1D7D0}\u{1D7D1}\u{1D44E}\u{1D44E}",
            // Arabic-Indic and Devanagari digits.
            "\u{0661}\u{0662}\u{0663}\u{0664}\u{0665}\u{0666}",
            "\u{0967}\u{0968}\u{0969}abc",
            // A combining mark or a joiner hidden among hex digits changes nothing.
            "dead\u{0332}beef",
            "dead\u{200D}beef",
        ] {
            assert!(
                matches!(check_name(name), Err(NameError::LooksLikeId(_))),
                "{name:?}: {:?}",
                check_name(name)
            );
        }
    }

    #[test]
    fn short_hex_names_pass_because_no_command_takes_them_as_ids() {
        for name in ["Ebba", "Dede", "abcde", "12345"] {
            assert!(!is_id_prefix(name));
            assert_eq!(check_name(name), Ok(()), "{name:?}");
        }
        assert!(is_id_prefix("abcdef"));
        assert!(is_id_prefix(" ABCDEF12 "));
        assert!(!is_id_prefix("abcdeg"));
        assert!(!is_id_prefix(&"a".repeat(65)));
    }

    #[test]
    fn hidden_characters_are_refused() {
        for (name, code) in [
            ("Ana\u{1b}[2J", 0x1B),
            ("Ana\r", 0x0D),
            ("An\na", 0x0A),
            ("Ana\u{202E}txt.exe", 0x202E),
            ("Ana\u{2066}", 0x2066),
            ("A\u{200B}na", 0x200B),
            ("Ana\u{9B}", 0x9B),
            ("\u{FEFF}Ana", 0xFEFF),
            ("Ana\u{E0041}", 0xE0041),
        ] {
            match check_name(name) {
                Err(NameError::Hidden { code: got, .. }) => assert_eq!(got, code, "{name:?}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn empty_padded_and_long_names_are_refused() {
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name("   "), Err(NameError::Empty));
        assert_eq!(check_name(" Ana"), Err(NameError::SurroundingSpace));
        assert_eq!(check_name("Ana\u{3000}"), Err(NameError::SurroundingSpace));
        assert_eq!(check_name(&"x".repeat(100)), Ok(()));
        assert_eq!(check_name(&"x".repeat(101)), Err(NameError::TooLong(101)));
    }

    #[test]
    fn the_log_skips_ops_that_name_a_person_or_device_like_an_id() {
        use crate::keys::{DeviceSecret, FamilyId, PersonId};
        use crate::membership::{self, MembershipOp, Role, SignedOp};
        let ana = DeviceSecret::from_seeds([1; 32], [2; 32]);
        let (phone, tablet) = (
            DeviceSecret::from_seeds([3; 32], [4; 32]),
            DeviceSecret::from_seeds([5; 32], [6; 32]),
        );
        let sign = |parents: Vec<membership::OpId>, body| {
            let op = MembershipOp {
                version: membership::VERSION,
                parents,
                author: ana.device_id(),
                time_ms: 0,
                body,
            };
            SignedOp::sign(op, &ana)
        };
        let add_device = |device: &DeviceSecret, name: &str| OpBody::AddDevice {
            person: PersonId([0; 32]),
            device: device.device_id(),
            device_x25519: device.x25519_public(),
            device_name: name.into(),
        };
        let root = sign(
            vec![],
            OpBody::CreateFamily {
                family: FamilyId([9; 32]),
                person: PersonId([0; 32]),
                name: "Ana".into(),
                device_x25519: ana.x25519_public(),
                device_name: "laptop".into(),
            },
        );
        let mut ops = vec![root];
        for body in [
            OpBody::RenamePerson {
                person: PersonId([0; 32]),
                name: "c0ffee12".into(),
            },
            OpBody::AddPerson {
                person: PersonId([1; 32]),
                name: "Bo\u{1b}[2J".into(),
                role: Role::Member,
            },
            add_device(&phone, "DEADBEEF"),
            // Built on the skipped ops, a good one still counts.
            add_device(&tablet, "Ana's tablet"),
        ] {
            let parents = vec![ops[ops.len() - 1].id()];
            ops.push(sign(parents, body));
        }
        let state = membership::evaluate(&ops).unwrap();
        assert_eq!(state.persons.len(), 1);
        assert_eq!(state.persons[&PersonId([0; 32])].name, "Ana");
        assert!(state.device(&phone.device_id()).is_none());
        assert!(state.device(&tablet.device_id()).is_some());
    }

    #[test]
    fn escape_shows_hidden_characters_and_keeps_the_rest() {
        assert!(matches!(escape_hidden("Ana 👩‍👧 ❤️"), Cow::Borrowed(_)));
        assert_eq!(
            escape_hidden("x\u{1b}[2Jy\r\u{202E}gpj.exe"),
            "x\\u{1b}[2Jy\\r\\u{202e}gpj.exe"
        );
        assert_eq!(escape_hidden("a\u{9b}31m"), "a\\u{9b}31m");
        assert!(
            !escape_hidden("\u{2066}\u{200B}\u{FEFF}")
                .chars()
                .any(is_hidden_char)
        );
    }
}
