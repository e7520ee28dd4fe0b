package layerapply

import (
	"errors"
	"path"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// dropInheritedACLs undoes what the kernel adds to an entry created in a directory with a
// default ACL: the entry gets only the ACLs its header gives, as in the ext4 and tar
// outputs. It also records whether name is a directory with a default ACL now.
func (d *Dir) dropInheritedACLs(name string, e *Entry) error {
	_, hasAccess := e.Xattr(aclAccess)
	_, hasDefault := e.Xattr(aclDefault)
	if e.Type == TypeDir {
		if d.defaultACL == nil {
			d.defaultACL = make(map[string]bool)
		}
		d.defaultACL[name] = hasDefault
	}
	if name == "." || !d.defaultACL[path.Dir(name)] {
		return nil
	}
	p := filepath.Join(d.dir, name)
	for _, a := range []struct {
		name  string
		given bool
	}{{aclAccess, hasAccess}, {aclDefault, hasDefault || e.Type != TypeDir}} {
		if a.given {
			continue
		}
		if err := unix.Lremovexattr(p, a.name); err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) {
			return d.fail("removexattr "+a.name, name, err)
		}
	}
	return nil
}
