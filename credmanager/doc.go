// Package credmanager gives every instance an identity certificate: it loads
// the cell's issuing CA, issues a leaf per instance, writes key and
// certificate into a host directory that the agent bind-mounts read-only
// into the container, and rotates them before they expire.
//
// # CA
//
// The Issuer (NewIssuer) holds the CA and signs: the Manager's instance
// certificates and, for the proxy, container-to-container ones
// (IssueC2C). It is its own type so that it can be made before the
// Manager, whose rotation handlers (the proxy) need it in their own
// constructors: the agent makes the Issuer, then the proxy, then the
// Manager with the Issuer and every handler in its Config. New makes an
// Issuer itself when given none.
//
// Config.CACertFile holds the issuer first, then optionally the certificates
// above it; all of them follow the leaf in instance.crt, and the last one is
// CACertPEM (what routers trust). Without a configured CA a dev CA (ECDSA
// P-256, 10 years) is created once in <data_dir>/identity/ and reused; every
// start logs "dev-ca-in-use" at error level. A key that does not match, an
// expired or not-yet-valid certificate, one that is not a CA (CA:FALSE or no
// keyCertSign), a chain out of order or an unreadable file fails New with
// the file named. No leaf outlives the CA: NotAfter is clamped to it.
//
// # Certificates
//
// CN = DNS SAN = guid, IP SANs = the container's IPv4/IPv6 addresses,
// OU = certificate_properties.organizational_unit (as pkix.Name puts them,
// like Diego: one multi-valued RDN, in DER's sorted order; see
// ValidateCertificateProperties), a positive 128-bit random
// serial, NotBefore = issue time - 1m, NotAfter = issue time + validity
// (24h), server and client auth, digitalSignature (+ keyEncipherment for
// RSA). A fresh key of Config.KeyType (ecdsa-p256, rsa-2048, rsa-3072) for
// every certificate. Credential.Serial is lower-case hex (FormatSerial).
//
// # Files
//
// HostDir(guid) = <data_dir>/credentials/<guid>/, laid out like a Kubernetes
// projected volume:
//
//	instance.crt        (regular file)                 leaf, then the CA file's certificates
//	instance.key        (regular file)                 PKCS#1 "RSA PRIVATE KEY" / SEC1 "EC PRIVATE KEY" (as Diego), 0600, owner uid:gid
//	instance-bundle.pem -> ..data/instance-bundle.pem  key, then the certificates; 0600, owner uid:gid
//	..data              -> ..2026_11_27_13_00_00.123456   (the current generation)
//	..2026_11_27_13_00_00.123456/                      also holds credential.json (serial, times, rotations)
//
// All symlinks are relative, so they resolve inside the container too.
// Directories are 0755 (traversable by the container's user through the
// bind mount), the credentials/ parent 0700 (no host account but root
// reaches any instance's files), whatever the umask. Key and bundle are owned by
// Identity.UID:GID with mode 0600 from the moment they exist. A rotation writes a new generation directory,
// swaps ..data with one rename(2), replaces instance.key and then
// instance.crt each by rename(2) (a hard link to the generation's file: no
// second copy is written), as Diego's InstanceIdentityHandler does, so
// inotify watchers of the directory, such as the Java buildpack's security
// provider, see IN_MOVED_TO for both names (a ..data swap alone shows them
// nothing), then removes the generation before the one replaced. Nothing is
// synced: see publish.
// The directory, not its files, is bind-mounted, so the container sees each
// rename.
//
// What readers can rely on:
//   - instance-bundle.pem: one open(2) gives key and certificates of one
//     generation. The recommended file for anything that can take a bundle
//     (tls.X509KeyPair(b, b) does).
//   - ReadPair (or the same by hand): open ..data once and read both files
//     relative to that directory (openat); on ENOENT start again. Never a
//     mixed pair.
//   - instance.key then instance.crt read after the event that replaced
//     instance.crt (what a watcher does): a matching pair, unless another
//     rotation follows at once.
//   - instance.crt and instance.key opened one after the other at any moment
//     (what CF_INSTANCE_CERT / CF_INSTANCE_KEY readers do): NOT guaranteed; a
//     rotation between the two opens gives a new certificate with the old key. Such
//     readers should compare the certificate's public key with the key and
//     read again on a mismatch. The tests show this straddle happening.
//
// # Rotation
//
// A tracked instance is rotated at a uniformly random point between 50% and
// 70% of its certificate's lifetime (RotateFrom, RotateTo), drawn anew per
// certificate and rounded up to a whole second (rotations due in the same
// second fire together). A failure (issuing, writing, or any Handler's error) is
// retried after 1s, doubling up to 1m, never past the deadline: the expiry
// of the newest certificate that every handler took. When the attempt at the
// deadline fails too, the instance is untracked and every ExpiryHandler is
// told. Every successful rotation calls every Handler in registration order
// and joins their errors (one failing handler does not hide the others);
// the handlers are Config's, fixed at New.
// Credential.Rotations counts certificates after the first; it is kept in
// credential.json so Adopt restores it after an agent restart.
//
// # Concurrency
//
// The Manager is an ifrit.Runner. Run starts one goroutine per tracked
// instance (and for every Track while it runs); Untrack, Remove and the end
// of Run cancel them and wait, so a rotation in flight always finishes
// before its directory is removed and no goroutine outlives Run. One
// instance's rotations never overlap. Issue refuses a tracked guid
// (ErrTracked); Issue, Adopt and Remove of one guid are the caller's to
// serialise (the container store does). Handlers run on the rotation
// goroutine and must not Untrack or Remove their own guid; expiry handlers
// may, as the instance is untracked before they are called. Time comes from
// Config.Clock.
package credmanager
