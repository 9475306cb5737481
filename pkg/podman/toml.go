package podman

import (
	"fmt"
	"strings"
)

// TableBool returns the boolean value of key in table of a TOML document
// ("[table]" then "key = true", or "table.key = true" at the top level),
// and whether it is set. It reads just enough TOML for that: comments,
// quoted keys, and multi-line arrays and strings, whose lines are never
// mistaken for table headers. The last assignment wins. A value other
// than true or false is an error naming the line.
func TableBool(data []byte, table, key string) (val, found bool, err error) {
	lines := strings.Split(string(data), "\n")
	cur := ""
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if line == "" || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			cur = headerName(line)
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k = unquoteKey(k)
		start := i
		v, i = valueOf(lines, i, v)
		if (cur == table && k == key) || (cur == "" && k == table+"."+key) {
			switch v {
			case "true":
				val, found = true, true
			case "false":
				val, found = false, true
			default:
				return false, false, fmt.Errorf("line %d: %s.%s = %q is not a boolean", start+1, table, key, v)
			}
		}
	}
	return val, found, nil
}

// headerName returns the table named by a header line such as
// "[engine]", "[ engine ] # comment" or "[[engine.x]]", with quotes and
// spaces around its dotted parts removed.
func headerName(line string) string {
	line = strings.TrimLeft(line, "[")
	end := strings.IndexByte(line, ']')
	if end < 0 {
		end = len(line)
	}
	parts := strings.Split(line[:end], ".")
	for i, p := range parts {
		parts[i] = unquoteKey(p)
	}
	return strings.Join(parts, ".")
}

// unquoteKey trims a key and its dotted parts of spaces and quotes.
func unquoteKey(k string) string {
	parts := strings.Split(strings.TrimSpace(k), ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// valueOf returns the value that starts with v on line i, without its
// comment, and the index of the line it ends on: a multi-line array or
// string runs on until it is closed.
func valueOf(lines []string, i int, v string) (string, int) {
	s := scanner{}
	out := strings.TrimSpace(s.feed(v))
	for (s.depth > 0 || s.multi != "") && i+1 < len(lines) {
		i++
		s.comment = false
		s.feed("\n" + lines[i])
	}
	return out, i
}

// scanner follows TOML strings, comments and brackets across lines.
type scanner struct {
	depth   int    // open [ of arrays (and { of inline tables)
	multi   string // the delimiter of an open multi-line string
	comment bool   // the rest of the line is a comment
}

// feed scans text and returns it up to the first comment outside strings.
func (s *scanner) feed(text string) string {
	end := len(text)
	for j := 0; j < len(text); j++ {
		if s.comment {
			break
		}
		if s.multi != "" {
			if strings.HasPrefix(text[j:], s.multi) {
				j += len(s.multi) - 1
				s.multi = ""
			} else if text[j] == '\\' && s.multi == `"""` {
				j++
			}
			continue
		}
		switch c := text[j]; c {
		case '#':
			s.comment = true
			end = j
		case '"', '\'':
			delim := strings.Repeat(string(c), 3)
			if strings.HasPrefix(text[j:], delim) {
				s.multi = delim
				j += 2
				continue
			}
			// A one-line string ends on its line.
			for j++; j < len(text) && text[j] != c && text[j] != '\n'; j++ {
				if c == '"' && text[j] == '\\' {
					j++
				}
			}
		case '[', '{':
			s.depth++
		case ']', '}':
			if s.depth > 0 {
				s.depth--
			}
		}
	}
	return text[:end]
}
