"""
Tests for L{tchat.text}: what user text may contain, and nick and room rules.
"""

import unicodedata

from twisted.trial.unittest import SynchronousTestCase

from tchat.text import (
    _prototypes,
    clean_text,
    nick_fold,
    nick_key,
    nick_problem,
    normalize_nick,
    normalize_room,
    room_problem,
    script_problem,
    skeleton,
)


class CleanTextTests(SynchronousTestCase):
    """
    L{clean_text} keeps what people type and drops what moves terminals.
    """

    def test_plain_text_kept(self) -> None:
        """
        Ordinary text, accents and emoji (with joiners) pass unchanged.
        """
        text = "héllo wörld 👩‍💻 日本語"
        self.assertEqual(clean_text(text), text)

    def test_csi_sequences_removed_whole(self) -> None:
        """
        A screen-clearing CSI sequence disappears entirely, with no residue.
        """
        self.assertEqual(clean_text("a\x1b[2Jb\x1b[1;31mc\x1b[0m"), "abc")

    def test_osc_title_sequence_removed(self) -> None:
        """
        An OSC sequence (window title) is removed up to its terminator.
        """
        self.assertEqual(clean_text("x\x1b]0;pwned\x07y"), "xy")
        self.assertEqual(clean_text("x\x1b]0;pwned\x1b\\y"), "xy")

    def test_c1_csi_removed(self) -> None:
        """
        The 8-bit CSI (U+009B) form is removed with its parameters.
        """
        self.assertEqual(clean_text("a\x9b2Jb"), "ab")

    def test_controls_removed(self) -> None:
        """
        C0 controls (bell, backspace, CR), DEL and C1 controls are dropped;
        a tab becomes a space.
        """
        self.assertEqual(clean_text("a\x07b\x08c\rd\x7fe\x85f\tg"), "abcdef g")

    def test_lone_escape_removed(self) -> None:
        """
        A trailing ESC, or ESC with one byte, is dropped.
        """
        self.assertEqual(clean_text("ab\x1b"), "ab")
        self.assertEqual(clean_text("a\x1bcb"), "ab")

    def test_bidi_overrides_removed(self) -> None:
        """
        Bidi overrides and isolates, which reorder displayed text, go.
        """
        self.assertEqual(clean_text("a\u202eb\u2066c\u2069d\u200fe"), "abcde")

    def test_line_separators_removed(self) -> None:
        """
        U+2028 and U+2029 cannot start a fake new line.
        """
        self.assertEqual(clean_text("a\u2028b\u2029c"), "abc")


class BlankRunTests(SynchronousTestCase):
    """
    L{clean_text} collapses runs of blanks, so that padding cannot push a
    forged C{[10:02] <alice> ...} to the start of a line of its own.
    """

    def test_padding_collapsed(self) -> None:
        """
        64 spaces, enough to wrap an 80-column terminal, become one.
        """
        forged = "[10:02] <alice> send me your password"
        self.assertEqual(clean_text("hi" + " " * 64 + forged), "hi " + forged)

    def test_single_spaces_kept(self) -> None:
        """
        Text with single spaces, ASCII or not, is left as it is.
        """
        for text in ("a b c", " a ", "h\u00e9llo w\u00f6rld", "\u65e5 \u672c"):
            self.assertEqual(clean_text(text), text)

    def test_any_whitespace(self) -> None:
        """
        Tabs, no-break spaces, ideographic spaces and the other Unicode
        spaces collapse too, alone or mixed; one of them alone is kept.
        """
        for blanks in ("\t\t", "\u00a0\u00a0", "\u3000" * 20, " \u2003\u2009 "):
            self.assertEqual(clean_text("a" + blanks + "b"), "a b", repr(blanks))
        self.assertEqual(clean_text("a\u3000b"), "a\u3000b")
        self.assertEqual(clean_text("h\u00e9llo   w\u00f6rld"), "h\u00e9llo w\u00f6rld")

    def test_blank_letters(self) -> None:
        """
        Runs of Hangul fillers (letters that show as blank space) and blank
        Braille patterns collapse as spaces do.
        """
        for blank in "\u3164\u115f\u1160\uffa0\u2800":
            self.assertEqual(clean_text("a" + blank * 32 + "b"), "a b", repr(blank))
            self.assertEqual(clean_text("a " + blank + " b"), "a b", repr(blank))

    def test_zero_width_among_blanks(self) -> None:
        """
        Zero-width spaces, joiners or variation selectors between blanks do
        not break a run.
        """
        for unseen in ("\u200b", "\u200d", "\u2060", "\ufeff", "\ufe0f", "\u00ad"):
            text = "a" + (" " + unseen) * 32 + " b"
            self.assertEqual(clean_text(text), "a b", repr(unseen))

    def test_emoji_joiners_kept(self) -> None:
        """
        Zero-width joiners between emoji, with no blank around them, stay.
        """
        family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
        self.assertEqual(clean_text(family + "  ok"), family + " ok")

    def test_spacing_kept_when_asked(self) -> None:
        """
        C{collapse=False} keeps the spacing (a message of the day's ASCII
        art) and still removes what moves the cursor.
        """
        art = "  /\\_/\\   tchat\t\u3164\u3164 (=^.^=)\x1b[2J"
        self.assertEqual(
            clean_text(art, collapse=False), "  /\\_/\\   tchat \u3164\u3164 (=^.^=)"
        )
        self.assertEqual(clean_text("a    b", collapse=False), "a    b")

    def test_ends(self) -> None:
        """
        A run at either end becomes one space, which callers strip.
        """
        self.assertEqual(clean_text("   hi   "), " hi ")
        self.assertEqual(clean_text("\t\thi\u3000\u3000"), " hi ")


class NickTests(SynchronousTestCase):
    """
    Nick rules: 1 to 24 letters, digits, C{_} and C{-}, compared casefolded.
    """

    def test_valid(self) -> None:
        """
        Letters (any script), digits, underscore and hyphen are fine.
        """
        for nick in ("a", "alice_2", "Zoë-x", "日本", "x" * 24):
            self.assertIsNone(nick_problem(nick), nick)

    def test_too_long(self) -> None:
        """
        25 characters is one too many, and the message says the limit.
        """
        self.assertIn("24", nick_problem("x" * 25) or "")

    def test_bad_characters(self) -> None:
        """
        Spaces, punctuation and symbols are refused.
        """
        for nick in ("a b", "a.b", "a#", "<a>", "😀"):
            self.assertIsNotNone(nick_problem(nick), nick)

    def test_empty(self) -> None:
        """
        An empty nick is refused.
        """
        self.assertIsNotNone(nick_problem(""))

    def test_casefold(self) -> None:
        """
        Nicks that differ only in case (including German sharp s) collide.
        """
        self.assertEqual(nick_key("ALICE"), nick_key("alice"))
        self.assertEqual(nick_key("STRASSE"), nick_key("straße"))

    def test_fullwidth_folds(self) -> None:
        """
        Fullwidth letters normalise to plain ones, so they cannot imitate.
        """
        self.assertEqual(normalize_nick("\uff41\uff4c\uff49\uff43\uff45"), "alice")


class NickKeyTests(SynchronousTestCase):
    """
    L{nick_key}: nicks a reader could not tell apart have one key (a
    confusable skeleton, Unicode TS #39); nicks that look different do not.
    """

    def assertSameKey(self, *nicks: str) -> None:
        keys = {nick_key(normalize_nick(n)) for n in nicks}
        self.assertEqual(len(keys), 1, f"{[ascii(n) for n in nicks]}: {keys}")

    def test_other_scripts(self) -> None:
        """
        Cyrillic and Greek look-alikes of Latin letters fold: the issue's
        C{alice}, C{Server}, C{admin} and C{ADMIN} with a Cyrillic a or e,
        or a Greek capital alpha.
        """
        self.assertSameKey("alice", "\u0430lice", "\u0430l\u0456\u0441\u0435")
        self.assertSameKey("Server", "S\u0435rver", "server")
        self.assertSameKey("admin", "\u0430dmin", "\u0391DMIN", "ADMIN")
        self.assertSameKey("coco", "\u0441\u043e\u0441\u043e")
        self.assertSameKey("paypal", "\u0440\u0430\u0443\u0440\u0430l")

    def test_compatibility_forms(self) -> None:
        """
        Fullwidth letters, Roman numerals and mathematical letters fold
        (NFKC, then the skeleton).
        """
        self.assertSameKey("alice", "\uff41\uff4c\uff49\uff43\uff45")
        self.assertSameKey("i", "\u2170", "I", "l")
        self.assertSameKey("iii", "\u2172", "\u2170\u2171")
        self.assertSameKey("bob", "\U0001d41b\U0001d428\U0001d41b")

    def test_case_insensitive(self) -> None:
        """
        Nicks that differ only in case still share a key, in every script.
        """
        self.assertSameKey("alice", "ALICE", "Alice")
        self.assertSameKey("stra\u00dfe", "STRASSE")
        self.assertSameKey(
            "\u039d\u0399\u039a\u039f\u03a3", "\u03bd\u03b9\u03ba\u03bf\u03c2"
        )
        self.assertSameKey("\u0418\u0412\u0410\u041d", "\u0438\u0432\u0430\u043d")

    def test_digits_and_letters(self) -> None:
        """
        Digits that look like letters fold with them, as TS #39 has it
        (0 is O, 1 is l), and so do C{rn} and C{m}: C{b0b} cannot sit
        beside C{bob}, nor C{B0B} beside C{BOB}.
        """
        self.assertSameKey("bob", "b0b", "B0B", "BOB")
        self.assertSameKey("alice", "a1ice")
        self.assertSameKey("mike", "rnike")

    def test_capital_i_and_small_l(self) -> None:
        """
        A capital I looks like a small l in the page's sans-serif font; a
        case-insensitive key can only keep them together by taking i and l
        as one letter.
        """
        self.assertSameKey("Alice", "AIice", "allce", "a|ice")

    def test_distinct(self) -> None:
        """
        Nicks that look different keep different keys.
        """
        nicks = [
            "alice",
            "alicia",
            "bob",
            "rob",
            "carol",
            "dave",
            "eve",
            "mallory",
            "ann",
            "anne",
            "x1",
            "x2",
            "guest-7f3a",
            "guest-7f3b",
            "tom",
            "tim",
            "\u65e5\u672c",
            "\u0418\u0432\u0430\u043d",
            "\u0430\u043d\u043d\u0430",
            "Zo\u00eb",
            "Zoe",
        ]
        keys = [nick_key(n) for n in nicks]
        self.assertEqual(
            len(set(keys)), len(nicks), list(zip(nicks, keys, strict=True))
        )

    def test_invisible_dropped(self) -> None:
        """
        Default-ignorable characters are not part of a key (TS #39 drops
        them), so looking up C{alice} with a zero-width space finds alice.
        """
        for unseen in ("\u200b", "\u200d", "\u2060", "\ufeff", "\u3164"):
            self.assertEqual(nick_key("alice" + unseen), nick_key("alice"))

    def test_patterns(self) -> None:
        """
        Keys of ban patterns keep C{*}, C{?} and C{[...]} as they are.
        """
        self.assertEqual(nick_key("Tr0ll*"), nick_key("troll") + "*")
        self.assertEqual(nick_key("b?b"), "b?b")
        self.assertEqual(nick_key("[ab]*"), "[ab]*")

    def test_fold_is_readable(self) -> None:
        """
        L{nick_fold}, the form bans keep, is NFKC and case folding only.
        """
        self.assertEqual(nick_fold("Tr0ll*"), "tr0ll*")
        self.assertEqual(nick_fold("\uff21lice"), "alice")

    def test_skeleton(self) -> None:
        """
        L{skeleton} maps characters to their TS #39 prototypes, after NFD.
        """
        self.assertEqual(skeleton("\u0430"), "a")
        self.assertEqual(skeleton("0"), "O")
        self.assertEqual(skeleton("I"), "l")
        self.assertEqual(skeleton("m"), "rn")
        self.assertEqual(skeleton("\u00e9"), "e\u0301")
        # U+1E9A's prototype is U+1EA3, which NFD takes apart.
        self.assertEqual(skeleton("\u1e9a"), skeleton("\u1ea3"))

    def test_prototypes_final(self) -> None:
        """
        No prototype holds a character that has a prototype of its own,
        so a skeleton is reached in one pass, as TS #39 promises.
        """
        prototypes = _prototypes()
        self.assertGreater(len(prototypes), 6000)
        for source, target in prototypes.items():
            self.assertEqual(
                [c for c in target if c in prototypes], [], ascii((source, target))
            )

    def test_key_of_key(self) -> None:
        """
        A key is its own key: folding converges (for every letter and
        digit of the Latin, Greek, Cyrillic, Armenian and fullwidth blocks).
        """
        for cp in [*range(0x20, 0x250), *range(0x370, 0x590), *range(0xFF00, 0xFFF0)]:
            char = chr(cp)
            if unicodedata.category(char)[0] in "LN":
                key = nick_key(char)
                self.assertEqual(nick_key(key), key, ascii(char))


class InvisibleNickTests(SynchronousTestCase):
    """
    L{nick_problem} names what a nick may not hold because nobody could see
    it: a nick with it would look the same as the nick without.
    """

    def assertNamed(self, typed: str, named: str, why: str = "is invisible") -> None:
        problem = nick_problem(normalize_nick(typed), typed) or ""
        self.assertIn(f"{named} {why}", problem, ascii(typed))

    def test_hangul_fillers(self) -> None:
        """
        The Hangul fillers are letters to Unicode, but show as blank: the
        one typed is named, although NFKC turns U+3164 into U+1160.
        """
        self.assertNamed("alice\u3164", "U+3164 HANGUL FILLER")
        self.assertNamed("\u115falice", "U+115F HANGUL CHOSEONG FILLER")
        self.assertNamed("al\u1160ice", "U+1160 HANGUL JUNGSEONG FILLER")
        self.assertNamed("alice\uffa0", "U+FFA0 HALFWIDTH HANGUL FILLER")
        self.assertNamed("\u3164", "U+3164 HANGUL FILLER")
        self.assertIsNotNone(nick_problem("alice\u1160"))

    def test_format_characters(self) -> None:
        """
        Zero-width spaces, joiners and marks, word joiners, invisible
        operators, the byte-order mark, the soft hyphen and tag characters
        (all format characters, Cf) are refused by name.
        """
        for cp in [
            *range(0x200B, 0x2010),
            *range(0x2060, 0x2065),
            *range(0x2066, 0x2070),
            0xFEFF,
            0x00AD,
            0x180E,
            0xE0001,
            0xE0041,
        ]:
            char = chr(cp)
            self.assertNamed(
                "ali" + char + "ce", f"U+{cp:04X} {unicodedata.name(char)}"
            )

    def test_unassigned_ignorable(self) -> None:
        """
        Default-ignorable code points not assigned yet (U+2065, U+FFF0) are
        no characters a nick may hold.
        """
        for char in ("\u2065", "\ufff0", "\U000e0080"):
            self.assertNamed(
                "a" + char, f"U+{ord(char):04X}", "is not a character a nick may hold"
            )

    def test_combining_marks(self) -> None:
        """
        Marks NFKC cannot fold into a letter (variation selectors, the
        grapheme joiner, marks alone, enclosing marks) are refused as
        marks; an accent typed as a combining mark on a letter that has an
        accented form is fine.
        """
        mark = "is a combining mark, not a letter"
        self.assertNamed("alice\ufe0f", "U+FE0F VARIATION SELECTOR-16", mark)
        self.assertNamed("alice\U000e0100", "U+E0100 VARIATION SELECTOR-17", mark)
        self.assertNamed("ali\u034fce", "U+034F COMBINING GRAPHEME JOINER", mark)
        self.assertNamed("\u0301", "U+0301 COMBINING ACUTE ACCENT", mark)
        self.assertNamed("q\u0301", "U+0301 COMBINING ACUTE ACCENT", mark)
        self.assertNamed("a\u20dd", "U+20DD COMBINING ENCLOSING CIRCLE", mark)
        self.assertNamed("\u180b", "U+180B MONGOLIAN FREE VARIATION SELECTOR ONE", mark)
        self.assertIsNone(nick_problem(normalize_nick("Zoe\u0308"), "Zoe\u0308"))

    def test_blank_braille(self) -> None:
        """
        The blank Braille pattern shows as a blank.
        """
        self.assertNamed("alice\u2800", "U+2800 BRAILLE PATTERN BLANK")

    def test_plain_rules_unchanged(self) -> None:
        """
        Spaces and punctuation still get the plain rule.
        """
        for nick in ("a b", "a.b", "bad!nick"):
            self.assertEqual(
                nick_problem(nick), "a nick may hold only letters, digits, '_' and '-'"
            )


class ScriptMixTests(SynchronousTestCase):
    """
    L{script_problem}: a nick may not mix Latin with Cyrillic or Greek
    (TS #39's Moderately Restrictive level), the mixes a case-insensitive
    key cannot always catch.
    """

    def test_refused(self) -> None:
        """
        Latin with Cyrillic or Greek letters, or Cyrillic with Greek, is
        refused, naming the letter of the other script.
        """
        for nick, named in [
            ("\u0430lice", "U+0430 CYRILLIC SMALL LETTER A"),
            ("S\u0435rver", "U+0435 CYRILLIC SMALL LETTER IE"),
            ("\u0391DMIN", "U+0391 GREEK CAPITAL LETTER ALPHA"),
            ("\u0422om", "U+0422 CYRILLIC CAPITAL LETTER TE"),
            ("\u0397\u0395LLO", "U+0397 GREEK CAPITAL LETTER ETA"),
            ("\u0418\u0432\u0430\u043d_\u039d\u03af\u03ba\u03bf\u03c2", "U+039D"),
            ("taro_\u592a\u90ce_\u0436", "U+0436 CYRILLIC SMALL LETTER ZHE"),
        ]:
            problem = script_problem(nick) or ""
            self.assertIn(named, problem, ascii(nick))
            self.assertIn("can pass for another nick", problem)

    def test_allowed(self) -> None:
        """
        One script, or Latin with one other that is not Cyrillic or Greek,
        or the Han sets of Japanese, Korean and Chinese, with digits,
        C{_} and C{-}: fine.
        """
        for nick in (
            "alice_2",
            "\u0418\u0432\u0430\u043d-1",
            "\u039d\u0399\u039a\u039f\u03a3",
            "taro_\u592a\u90ce",
            "\u305f\u308d\u3046\u592a\u90ce",
            "\u30bf\u30ed\u30a6_taro",
            "\ud55c\uad6d_\u97d3\u570b_kr",
            "Armen_\u0531\u0580\u0574\u0565\u0576",
            "\u05d3\u05d5\u05d3",
        ):
            self.assertIsNone(script_problem(nick), ascii(nick))


class RoomNameTests(SynchronousTestCase):
    """
    Room names: C{#} then 1 to 32 name characters.
    """

    def test_hash_added(self) -> None:
        """
        C{lobby} means C{#lobby}.
        """
        self.assertEqual(normalize_room("lobby"), "#lobby")
        self.assertEqual(normalize_room("#lobby"), "#lobby")

    def test_problems(self) -> None:
        """
        Empty, over-long and punctuated names are refused.
        """
        self.assertIsNone(room_problem("#dev-2_x"))
        self.assertIsNotNone(room_problem("#"))
        self.assertIsNotNone(room_problem("#" + "x" * 33))
        self.assertIsNotNone(room_problem("#a.b"))
        self.assertIsNotNone(room_problem("##a"))
