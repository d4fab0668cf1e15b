"""
Tests for L{tchat.text}: what user text may contain, and nick and room rules.
"""

from twisted.trial.unittest import SynchronousTestCase

from tchat.text import (
    clean_text,
    nick_key,
    nick_problem,
    normalize_nick,
    normalize_room,
    room_problem,
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
