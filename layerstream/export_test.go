package layerstream

// WaitDecoded waits until layer i of p has been decoded and returns how many of its bytes
// went to its spool file and the most bytes p held in memory at once.
func WaitDecoded(p *Pipeline, i int) (spooled, peakMem int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := p.layers[i]
	for !pl.done && !p.dead {
		p.cond.Wait()
	}
	return pl.fsize, p.peakMem
}

// Mapped returns how many chunks p has mapped and not unmapped.
func Mapped(p *Pipeline) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mapped
}
