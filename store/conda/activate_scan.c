// SPDX-License-Identifier: MIT
/*
 * The textual scan of activate_scan.h: a script is read once, a character at a time,
 * into words (quotes removed) and simple commands; each command is judged when it ends.
 * A # that starts a word starts a comment.
 */
#include "activate_scan.h"

#include <string.h>

/* Words kept per command and bytes per word: a script's commands are short; what is past
 * these is not looked at. */
#define WORDS_MAX 64
#define WORD_MAX  256

struct command {
	char words[WORDS_MAX][WORD_MAX];
	size_t nwords;
	bool redirect_write; /* a > redirection to a path in the prefix */
};

struct scanner {
	struct command cmd;
	char word[WORD_MAX];
	size_t wlen;
	bool in_word;
	char redirect; /* 0 none, '>' the next word is written to, '<' read from */
	bool writes;
};

static bool in_prefix(const char *w)
{
	static const char var[] = "CONDA_PREFIX";
	size_t n = sizeof(var) - 1;

	if (w[0] != '$')
		return false;
	if (!strncmp(w + 1, var, n))
		return !((w[1 + n] >= 'A' && w[1 + n] <= 'Z') ||
		         (w[1 + n] >= 'a' && w[1 + n] <= 'z') ||
		         (w[1 + n] >= '0' && w[1 + n] <= '9') || w[1 + n] == '_');
	return w[1] == '{' && !strncmp(w + 2, var, n) && (w[2 + n] == '}' || w[2 + n] == ':');
}

/* The command's name, past keywords and variable assignments; its index or nwords. */
static size_t command_at(const struct command *c)
{
	static const char *const skip[] = {"if",    "then", "else", "elif",    "do",   "while",
	                                   "until", "!",    "{",    "command", "sudo", "exec"};
	size_t i = 0;

	for (; i < c->nwords; i++) {
		bool kw = strchr(c->words[i], '=') != NULL && c->words[i][0] != '=';

		for (size_t k = 0; !kw && k < sizeof(skip) / sizeof(skip[0]); k++)
			kw = !strcmp(c->words[i], skip[k]);
		if (!kw)
			break;
	}
	return i;
}

static bool command_writes(const struct command *c)
{
	static const char *const any[] = {"touch", "mkdir", "rm", "rmdir", "tee", "truncate"};
	static const char *const last[] = {"cp", "mv", "ln", "install"};
	size_t at = command_at(c);
	const char *name;

	if (c->redirect_write)
		return true;
	if (at >= c->nwords)
		return false;
	name = strrchr(c->words[at], '/') ? strrchr(c->words[at], '/') + 1 : c->words[at];
	for (size_t k = 0; k < sizeof(last) / sizeof(last[0]); k++)
		if (!strcmp(name, last[k]))
			return at + 1 < c->nwords && in_prefix(c->words[c->nwords - 1]);
	if (!strcmp(name, "sed")) {
		bool inplace = false, target = false;

		for (size_t i = at + 1; i < c->nwords; i++) {
			inplace = inplace || !strncmp(c->words[i], "-i", 2) ||
			          !strncmp(c->words[i], "--in-place", 10);
			target = target || in_prefix(c->words[i]);
		}
		return inplace && target;
	}
	for (size_t k = 0; k < sizeof(any) / sizeof(any[0]); k++)
		if (!strcmp(name, any[k]))
			for (size_t i = at + 1; i < c->nwords; i++)
				if (in_prefix(c->words[i]))
					return true;
	return false;
}

static void end_word(struct scanner *s)
{
	if (!s->in_word)
		return;
	s->word[s->wlen] = '\0';
	if (s->redirect == '>')
		s->cmd.redirect_write = s->cmd.redirect_write || in_prefix(s->word);
	else if (!s->redirect && s->cmd.nwords < WORDS_MAX)
		memcpy(s->cmd.words[s->cmd.nwords++], s->word, s->wlen + 1);
	s->redirect = 0;
	s->in_word = false;
	s->wlen = 0;
}

static void end_command(struct scanner *s)
{
	end_word(s);
	s->writes = s->writes || command_writes(&s->cmd);
	s->cmd.nwords = 0;
	s->cmd.redirect_write = false;
	s->redirect = 0;
}

static void add_char(struct scanner *s, char c)
{
	s->in_word = true;
	if (s->wlen < WORD_MAX - 1)
		s->word[s->wlen++] = c;
}

bool activate_scan_writes(const char *text, size_t len)
{
	static struct scanner zero;
	struct scanner s = zero;
	char quote = 0;

	for (size_t i = 0; i < len && !s.writes; i++) {
		char c = text[i];

		if (quote) {
			if (c == quote)
				quote = 0;
			else if (quote == '"' && c == '\\' && i + 1 < len)
				add_char(&s, text[++i]);
			else
				add_char(&s, c);
			continue;
		}
		switch (c) {
		case '\'':
		case '"':
			quote = c;
			s.in_word = true;
			break;
		case '\\':
			if (i + 1 < len && text[i + 1] != '\n')
				add_char(&s, text[i + 1]);
			i++;
			break;
		case ' ':
		case '\t':
			end_word(&s);
			break;
		case '>':
		case '<':
			end_word(&s);
			/* >&2 and <&0 are descriptors, not files. */
			if (i + 1 < len && text[i + 1] == '&')
				i++;
			else
				s.redirect = c;
			if (c == '>' && i + 1 < len && (text[i + 1] == '>' || text[i + 1] == '|'))
				i++;
			break;
		case ';':
		case '&':
		case '|':
		case '(':
		case ')':
		case '\n':
			end_command(&s);
			break;
		case '#':
			/* A comment, up to the end of the line (which ends the command). */
			if (!s.in_word) {
				while (i + 1 < len && text[i + 1] != '\n')
					i++;
				break;
			}
			add_char(&s, c);
			break;
		default:
			add_char(&s, c);
		}
	}
	end_command(&s);
	return s.writes;
}
