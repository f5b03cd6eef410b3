package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/cellagent/cellagent/executor"
)

// importImage sends an image archive to the agent (POST /v1/images),
// showing how much has gone out.
func (c *cli) importImage(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "name for the archive's image (needed when the archive names none), e.g. registry.example.com/app:1.0")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	if fs.NArg() != 1 {
		return usageError("usage: cellctl import [--name REF] ARCHIVE.tar  (an OCI image layout or docker save tar)")
	}
	hc, ok := c.client.(*executor.HTTPClient)
	if !ok {
		return fmt.Errorf("import needs the HTTP API")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	pr := &progressReader{r: f, total: st.Size(), out: stderr, every: time.Second}
	imgs, err := hc.ImportImage(ctx, pr, *name)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(imgs)
	}
	w := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "IMAGE\tDIGEST")
	for _, i := range imgs {
		fmt.Fprintf(w, "%s\t%s\n", i.Name, i.Digest)
	}
	return w.Flush()
}

// progressReader reports how much of total was read, at most every every.
type progressReader struct {
	r     io.Reader
	total int64
	read  int64
	out   io.Writer
	every time.Duration
	last  time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.read += int64(n)
	if now := time.Now(); now.Sub(p.last) >= p.every || err == io.EOF {
		p.last = now
		fmt.Fprintf(p.out, "sent %d of %d MB\n", p.read>>20, p.total>>20)
	}
	return n, err
}
