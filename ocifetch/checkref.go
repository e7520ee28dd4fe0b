package ocifetch

// CheckReference reports whether ref is well formed in one of the forms [Image] accepts
// (see the package documentation), without contacting a registry or reading a local
// image (a local path is only looked at to tell whether it names one). A command line uses it to tell a malformed reference (a usage error) from an
// image that cannot be fetched.
func CheckReference(ref string) error {
	_, err := parseReference(ref)
	return err
}
