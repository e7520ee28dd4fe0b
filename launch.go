package img2ext4

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// LaunchConfig is what a VM or sandbox launcher needs from the image config to start the
// converted root filesystem.
type LaunchConfig struct {
	// Image is the manifest digest of the converted image.
	Image string `json:"image"`
	// Platform is os/arch[/variant] from the image config.
	Platform     string            `json:"platform"`
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	Env          []string          `json:"env,omitempty"`
	WorkingDir   string            `json:"working_dir,omitempty"`
	User         string            `json:"user,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	ExposedPorts []string          `json:"exposed_ports,omitempty"`
	StopSignal   string            `json:"stop_signal,omitempty"`
	// CAEnv, after [WithCACerts], holds environment settings ("NAME=value") a launcher may
	// add for runtimes that ignore the system trust store: NODE_EXTRA_CA_CERTS for Node.js,
	// SSL_CERT_FILE and SSL_CERT_DIR for programs with their own OpenSSL or a static build
	// that look elsewhere (see [cacert.Report.Env]). The image's own stores are already
	// updated, so nothing else needs them.
	CAEnv []string `json:"ca_env,omitempty"`
	// Verity, after [WithVerity], is the image's dm-verity hash tree: root hash, salt,
	// data blocks, hash file and offset, and the veritysetup open line.
	Verity *Verity `json:"verity,omitempty"`
}

// LaunchConfig extracts the launch settings from the result.
func (r *Result) LaunchConfig() LaunchConfig {
	c := r.Config
	lc := LaunchConfig{
		Image: r.Digest.String(), Platform: r.Platform.String(),
		Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User,
		Labels: c.Labels, StopSignal: c.StopSignal, CAEnv: r.CACerts.Env(),
		Verity: r.Verity,
	}
	for p := range c.ExposedPorts {
		lc.ExposedPorts = append(lc.ExposedPorts, p)
	}
	slices.Sort(lc.ExposedPorts)
	return lc
}

// WriteLaunchConfig writes the result's [LaunchConfig] as indented JSON to file, atomically.
func (r *Result) WriteLaunchConfig(file string) error {
	b, err := json.MarshalIndent(r.LaunchConfig(), "", "  ")
	if err != nil {
		return fmt.Errorf("write config %s: %w", file, err)
	}
	return createAtomic(file, "write config", func(f *os.File) error {
		if _, err := f.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write config %s: %w", file, err)
		}
		return nil
	})
}

// WithLaunchConfig writes the result's [LaunchConfig] as indented JSON to file, with the
// output's atomicity: it is renamed into place right after the output, and a failure of
// either leaves neither new (a block device or stream already written stays so, without
// its config). file is checked before the download: its directory must be writable. The
// default writes no launch config.
func WithLaunchConfig(file string) Option {
	return func(o *options) error {
		if file == "" {
			return errors.New("empty launch config path")
		}
		o.config = file
		return nil
	}
}

// stageLaunchConfig writes the launch config asked for under a temporary name, for
// commitLaunchConfig to rename into place once the output is.
func (o *options) stageLaunchConfig(r *Result) error {
	if o.config == "" {
		return nil
	}
	b, err := json.MarshalIndent(r.LaunchConfig(), "", "  ")
	if err != nil {
		return fmt.Errorf("write config %s: %w", o.config, err)
	}
	file := o.config
	if real, err := filepath.EvalSymlinks(file); err == nil {
		file = real
	}
	o.staged, err = stageFile(file, "write config", func(f *os.File) error {
		if _, err := f.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("write config %s: %w", o.config, err)
		}
		return nil
	})
	return err
}

// commitLaunchConfig renames a staged launch config into place.
func (o *options) commitLaunchConfig() error {
	s := o.staged
	o.staged = nil
	return s.commit()
}
