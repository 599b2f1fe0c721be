package http

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// WithRecordWriter writes the audit and access records of requests as JSON
// lines to w, encoded by hand, instead of through the logger: the same
// fields and layout as slog's JSON handler (time, level, msg, system, then
// the record's fields), without its generic machinery, which is most of a
// cached read's cost. w must be safe for concurrent use; pair it with a
// buffered writer so a read makes no system call of its own.
func WithRecordWriter(w io.Writer) ServerOption { return func(s *Server) { s.records = w } }

var recordBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// record writes an info record with the given system. With a record writer
// it is encoded here; otherwise it goes through h (the logger's handler),
// taking the time it is given and skipping slog's walk of the stack for a
// source location no handler here asks for.
func (s *Server) record(ctx context.Context, h slog.Handler, system string, t time.Time, msg string, attrs ...slog.Attr) {
	if s.records == nil {
		if !h.Enabled(ctx, slog.LevelInfo) {
			return
		}
		rec := slog.NewRecord(t, slog.LevelInfo, msg, 0)
		rec.AddAttrs(attrs...)
		_ = h.Handle(ctx, rec)
		return
	}
	bp := recordBufs.Get().(*[]byte)
	b := append((*bp)[:0], `{"time":"`...)
	b = t.AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","level":"INFO","msg":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"system":`...)
	b = appendJSONString(b, system)
	for _, a := range attrs {
		b = append(b, ',')
		b = appendJSONString(b, a.Key)
		b = append(b, ':')
		switch v := a.Value; v.Kind() {
		case slog.KindString:
			b = appendJSONString(b, v.String())
		case slog.KindInt64:
			b = strconv.AppendInt(b, v.Int64(), 10)
		case slog.KindDuration:
			b = strconv.AppendInt(b, int64(v.Duration()), 10) // as slog's JSON handler: nanoseconds
		default:
			b = appendJSONString(b, v.String())
		}
	}
	b = append(b, '}', '\n')
	_, _ = s.records.Write(b)
	*bp = b
	recordBufs.Put(bp)
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
