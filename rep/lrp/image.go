package lrp

import (
	"net/url"
	"strings"

	"github.com/distribution/reference"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cellagent/cellagent/executor"
)

// Image answers the run request image of a desired rootfs URL:
// preloaded:STACK through the stacks map, and a docker image as
// executor.DockerImagePrefix + its normalized reference, the way Diego's
// garden reads the URL: docker:///REPO is on Docker Hub (docker:///busybox
// is docker.io/library/busybox:latest), docker://HOST[:PORT]/REPO on that
// registry; the tag or digest is the URL's fragment, as the Cloud
// Controller writes it (docker:///repo#1.0, docker:///repo#sha256:...), or
// the end of its path (docker:///repo:1.0, docker:///repo@sha256:...).
// A missing tag is latest.
func Image(rootfs string, stacks map[string]string) (string, error) {
	u, err := url.Parse(rootfs)
	if err != nil {
		return "", refuse("rootfs %q: %v", rootfs, err)
	}
	switch u.Scheme {
	case "preloaded":
		name, ok := stacks[u.Opaque]
		if !ok {
			return "", refuse("rootfs %q: stack %q is not one of this cell's stacks", rootfs, u.Opaque)
		}
		return "preloaded:" + name, nil
	case "docker":
		ref, err := dockerReference(u)
		if err != nil {
			return "", refuse("rootfs %q: %s", rootfs, err.Reason)
		}
		return executor.DockerImagePrefix + ref, nil
	}
	return "", refuse("rootfs %q: only preloaded:STACK and docker://[REGISTRY]/REPO[:TAG] are supported", rootfs)
}

// dockerReference maps a docker rootfs URL to a normalized image reference.
func dockerReference(u *url.URL) (string, *Refusal) {
	switch {
	case u.Opaque != "":
		return "", refuse("want docker:///REPO or docker://REGISTRY/REPO")
	case u.User != nil:
		return "", refuse("credentials in the URL are not accepted (image_username and image_password carry them)")
	case u.RawQuery != "" || u.ForceQuery:
		return "", refuse("a query is not part of an image reference")
	}
	repo := strings.TrimPrefix(u.Path, "/")
	if repo == "" {
		return "", refuse("no repository")
	}
	if u.Host != "" {
		// A reference takes its first component as the registry only when
		// it looks like a host; docker://registry/app must not become
		// docker.io/registry/app.
		if !strings.ContainsAny(u.Host, ".:") && u.Host != "localhost" {
			return "", refuse("registry %q: name it with a dot or a port (registry.example.com, %s:5000) so that it cannot be read as a Docker Hub namespace", u.Host, u.Host)
		}
		repo = u.Host + "/" + repo
	}
	if f := u.Fragment; f != "" {
		if strings.ContainsAny(repo[strings.LastIndex(repo, "/")+1:], ":@") {
			return "", refuse("a tag or digest both in the path and in the fragment")
		}
		if strings.Contains(f, ":") { // a digest: algorithm:hex
			repo += "@" + f
		} else {
			repo += ":" + f
		}
	}
	named, err := reference.ParseDockerRef(repo)
	if err != nil {
		return "", refuse("%v", err)
	}
	return named.String(), nil
}

// rootUsers are the run action users that are uid 0 in every image; a
// docker image's run action without a user runs as root too, as garden
// runs it.
var rootUsers = map[string]bool{"": true, "root": true, "0": true}

// dockerUser answers the process user of a docker image's run action and
// refuses root where the instance may not be privileged. The cell has no
// user namespaces: uid 0 in the container is uid 0 on the host, where
// garden maps it to an unprivileged host uid.
func dockerUser(user string, privileged bool, s Settings) (string, error) {
	if !rootUsers[user] {
		return user, nil
	}
	if privileged && s.AllowPrivileged {
		return "root", nil
	}
	return "", refuse("docker image runs as root (run action user %q): this cell has no user namespaces, so root in the container is root on the host; give the image a non-root USER (the run action's user), or run it privileged on a cell with allow_privileged", user)
}

// imageAuthFields are the field numbers of image_username and
// image_password, which this cell reads from the fields its wire types do
// not declare (see unknownFields).
var imageAuthFields = map[protoreflect.FullName][2]protowire.Number{
	"models.DesiredLRP":     {31, 32},
	"models.TaskDefinition": {23, 24},
}

// handledUnknown tells whether field num of a message of this kind is
// one this package reads from the unknown fields.
func handledUnknown(m protoreflect.Message, num protowire.Number) bool {
	f, ok := imageAuthFields[m.Descriptor().FullName()]
	return ok && (num == f[0] || num == f[1])
}

// imageAuth reads image_username and image_password of msg: a registry
// login for a docker image. Set for any other rootfs, or only one of them,
// it is refused.
func imageAuth(msg proto.Message, image string) (*executor.RegistryAuth, error) {
	m := msg.ProtoReflect()
	f, ok := imageAuthFields[m.Descriptor().FullName()]
	if !ok {
		return nil, nil
	}
	user, pass := unknownString(m, f[0]), unknownString(m, f[1])
	switch {
	case user == "" && pass == "":
		return nil, nil
	case !strings.HasPrefix(image, executor.DockerImagePrefix):
		return nil, refuse("image_username and image_password apply to docker images only")
	case user == "" || pass == "":
		return nil, refuse("image_username and image_password must be given together")
	}
	return &executor.RegistryAuth{Username: user, Password: pass}, nil
}

// unknownString answers the last value of string field num among m's
// unknown fields ("" when absent or not a string).
func unknownString(m protoreflect.Message, num protowire.Number) string {
	var out string
	raw := m.GetUnknown()
	for len(raw) > 0 {
		n, typ, l := protowire.ConsumeTag(raw)
		if l < 0 {
			return out
		}
		raw = raw[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(raw)
			if l < 0 {
				return out
			}
			out = string(v)
		}
		skip := protowire.ConsumeFieldValue(n, typ, raw)
		if skip < 0 {
			return out
		}
		raw = raw[skip:]
	}
	return out
}
