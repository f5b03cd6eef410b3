package runtime

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/cellagent/cellagent/containerstore"
)

// lookupUser finds name (a user name or a numeric uid) in an /etc/passwd.
// A numeric uid that is not listed is accepted with gid = uid, as runc does.
func lookupUser(passwd io.Reader, name string) (containerstore.User, error) {
	u, err := lookupEntry(passwd, name)
	return u.User, err
}

// lookupEntry is lookupUser with the user's home directory ("" for a
// numeric uid that is not listed).
func lookupEntry(passwd io.Reader, name string) (containerstore.RootfsUser, error) {
	if name == "" {
		return containerstore.RootfsUser{}, fmt.Errorf("empty user")
	}
	uid, numErr := strconv.ParseUint(name, 10, 32)
	if passwd != nil {
		sc := bufio.NewScanner(passwd)
		for sc.Scan() {
			f := strings.Split(sc.Text(), ":")
			if len(f) < 4 {
				continue
			}
			if f[0] == name || (numErr == nil && f[2] == name) {
				u, err1 := strconv.ParseUint(f[2], 10, 32)
				g, err2 := strconv.ParseUint(f[3], 10, 32)
				if err1 != nil || err2 != nil {
					return containerstore.RootfsUser{}, fmt.Errorf("bad passwd entry for %q", name)
				}
				home := ""
				if len(f) > 5 {
					home = f[5]
				}
				return containerstore.RootfsUser{User: containerstore.User{UID: uint32(u), GID: uint32(g)}, Home: home}, nil
			}
		}
	}
	if numErr == nil {
		return containerstore.RootfsUser{User: containerstore.User{UID: uint32(uid), GID: uint32(uid)}}, nil
	}
	return containerstore.RootfsUser{}, fmt.Errorf("user %q does not exist in the rootfs's /etc/passwd", name)
}
