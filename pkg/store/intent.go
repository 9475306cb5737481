package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/passt-portmap/passt-portmap/pkg/safefs"
)

// The intent of an update lives in the attachment's lock file, which the
// writer holds open and locked: Arm stores it with one pwrite(2) into
// that file, a copy into the page cache with no file created, renamed or
// synced. That is what lets an ADD write its intent while it holds the
// forwarder's only client slot (where the intent must be decided, see
// pkg/attach) without making the forwarder's other clients wait on the
// file system.
//
// An intent is a whole record (the record the attachment would have with
// the rules it is about to add as pending), framed as
//
//	"ppintent" | length (4, big-endian) | CRC-32C of the payload (4) | payload (Encode)
//
// A write cut short (the writer killed within the pwrite) fails the
// check and counts as no intent: the writer sends nothing before Arm has
// returned. Record.Intent orders intents and records: an intent counts
// only while its number is above the one of the record file (or there is
// no record file), so a record written after its intent supersedes it
// without touching the lock file.

const intentMagic = "ppintent"

// intentHeader is the size of the frame before the payload.
const intentHeader = len(intentMagic) + 8

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// encodeIntent frames r as an intent.
func encodeIntent(r *Record) ([]byte, error) {
	payload, err := Encode(r)
	if err != nil {
		return nil, err
	}
	return encodeFrame(intentMagic, payload), nil
}

// encodeFrame frames payload: magic, its length and its CRC-32C.
func encodeFrame(magic string, payload []byte) []byte {
	b := make([]byte, intentHeader, intentHeader+len(payload))
	copy(b, magic)
	binary.BigEndian.PutUint32(b[len(magic):], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[len(magic)+4:], crc32.Checksum(payload, crcTable))
	return append(b, payload...)
}

// decodeFrame returns the payload framed with magic at the start of b:
// nil when b holds none, an error when a frame is there but does not
// check out (cut short while written, or damaged).
func decodeFrame(magic string, b []byte) ([]byte, error) {
	if len(b) < intentHeader || !bytes.Equal(b[:len(magic)], []byte(magic)) {
		return nil, nil
	}
	n := binary.BigEndian.Uint32(b[len(magic):])
	sum := binary.BigEndian.Uint32(b[len(magic)+4:])
	payload := b[intentHeader:]
	if uint64(n) > uint64(len(payload)) {
		return nil, errors.New("frame cut short")
	}
	payload = payload[:n]
	if crc32.Checksum(payload, crcTable) != sum {
		return nil, errors.New("frame checksum mismatch")
	}
	return payload, nil
}

// decodeIntent returns the intent in the contents b of a lock file, nil
// when there is none: an empty file, or a frame that does not check out
// (cut short while written, or damaged).
func decodeIntent(b []byte, k Key) *Record {
	r, err := decodeIntentFrame(b)
	if err != nil || r == nil || r.Key() != k {
		return nil
	}
	return r
}

// decodeIntentFrame returns the intent framed in b: nil when b holds
// none, an error when the frame is there but does not check out.
func decodeIntentFrame(b []byte) (*Record, error) {
	payload, err := decodeFrame(intentMagic, b)
	if err != nil || payload == nil {
		return nil, err
	}
	r, err := Decode(payload)
	if err != nil {
		return nil, err
	}
	if r.Intent == 0 {
		return nil, errors.New("intent without a number")
	}
	return r, nil
}

// readIntent returns the intent in the lock file name of nd, nil when
// there is none (or no lock file). A lock file that is not a regular file
// of ours is an *UnsafeError (see safefs.Dir.OpenFile).
func readIntent(nd *safefs.Dir, name string, k Key) (*Record, error) {
	f, err := nd.OpenFile(name, unix.O_RDONLY, 0)
	if missing(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("record: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecordSize+int64(intentHeader)))
	if err != nil {
		return nil, fmt.Errorf("record: read %s: %w", f.Name(), err)
	}
	return decodeIntent(b, k), nil
}

// active reports whether intent counts over rec, the record read from
// the record file or its backup copy (nil: none).
func active(intent, rec *Record) bool {
	return intent != nil && (rec == nil || intent.Intent > rec.Intent)
}

// Arm stores r, numbered r.Intent (which must be above the Intent of
// every record and intent of this attachment so far, see NextIntent), as
// the attachment's intent: from its return on, every reader of the
// record reads r instead, until a record numbered r.Intent or more is
// written. It is one pwrite into the held lock file, and is not synced: it
// describes what the forwarder's tables may hold, which a machine crash
// empties too.
func (l *Locked) Arm(r *Record) error {
	if l.f == nil {
		return errors.New("store: arm after unlock")
	}
	if r.Key() != l.key {
		return fmt.Errorf("store: intent of %s armed under the lock of %s", r.Key(), l.key)
	}
	if r.Intent == 0 {
		return errors.New("store: an intent needs a number (Record.Intent)")
	}
	r.Version = FormatVersion
	if r.Updated.IsZero() {
		r.Updated = time.Now().UTC()
	}
	b, err := encodeIntent(r)
	if err != nil {
		return fmt.Errorf("store: encode intent: %w", err)
	}
	if _, err := l.f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("store: write intent to %s: %w", l.f.Name(), err)
	}
	l.lastIntent = max(l.lastIntent, r.Intent)
	l.intent = true
	return nil
}

// NextIntent is the number for the next intent of the locked attachment:
// one above the last record or intent read (see Read).
func (l *Locked) NextIntent() uint64 { return l.lastIntent + 1 }

// FromIntent reports whether the last Read returned an intent, not a
// record file: it must be written as the record (Write) before another
// intent replaces it in the lock file, or it is lost should the next
// Arm be cut short.
func (l *Locked) FromIntent() bool { return l.fromIntent }

// holdsIntent reports whether the open lock file f holds an intent that
// checks out (of any attachment: the caller knows whose file it is).
func holdsIntent(f *os.File) bool {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, maxRecordSize+int64(intentHeader)))
	if err != nil {
		return true // cannot tell: keep it
	}
	r, err := decodeIntentFrame(b)
	return err == nil && r != nil
}

// disarm empties the lock file: no intent left to supersede the record.
func (l *Locked) disarm() error {
	if err := l.f.Truncate(0); err != nil {
		return fmt.Errorf("store: clear intent in %s: %w", l.f.Name(), err)
	}
	return nil
}
