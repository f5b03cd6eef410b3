package bbs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/cellagent/cellagent/rep/models"
)

const (
	routeLRPInstanceEvents = "/v1/events/lrp_instances.r1"
	// eventDesiredLRPChanged is models.EventTypeDesiredLRPChanged.
	eventDesiredLRPChanged = "desired_lrp_changed"
	maxEventBytes          = 4 << 20
)

// DesiredLRPChanges subscribes to BBS's LRP instance event stream for
// cellID (desired LRP events are not filtered by cell) and calls changed
// with each desired_lrp_changed event, in order, until ctx ends or the
// stream fails; it answers why it ended. connected is called once the
// stream is open, so a caller can read state it must not miss a change
// of. BBS writes server-sent events whose data is the base64 protobuf
// event (bbs/events/event_source.go); other event types are skipped.
func (c *Client) DesiredLRPChanges(ctx context.Context, cellID string, connected func(), changed func(*models.DesiredLRPChangedEvent)) error {
	body, err := proto.Marshal(&models.EventsByCellId{CellId: cellID})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+routeLRPInstanceEvents, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("bbs %s: %w", routeLRPInstanceEvents, err)
	}
	req.Header.Set("Content-Type", protobufContentType)
	resp, err := c.stream.Do(req)
	if err != nil {
		return fmt.Errorf("bbs %s: %w", routeLRPInstanceEvents, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("bbs %s: http %d: %.200s", routeLRPInstanceEvents, resp.StatusCode, b)
	}
	if connected != nil {
		connected()
	}
	return readEvents(resp.Body, func(name string, data []byte) error {
		if name != eventDesiredLRPChanged {
			return nil
		}
		raw, err := base64.StdEncoding.DecodeString(string(data))
		if err != nil {
			return fmt.Errorf("event %s: %w", name, err)
		}
		ev := &models.DesiredLRPChangedEvent{}
		if err := proto.Unmarshal(raw, ev); err != nil {
			return fmt.Errorf("event %s: %w", name, err)
		}
		changed(ev)
		return nil
	})
}

// readEvents parses a server-sent event stream (event: and data: lines,
// an empty line ends an event) and hands each event to fn.
func readEvents(r io.Reader, fn func(name string, data []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxEventBytes)
	var name string
	var data []byte
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data != nil {
				if err := fn(name, data); err != nil {
					return err
				}
			}
			name, data = "", nil
		case strings.HasPrefix(line, "event:"):
			name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")...)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("bbs event stream: %w", err)
	}
	return fmt.Errorf("bbs event stream: %w", io.EOF)
}
