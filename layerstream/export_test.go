package layerstream

import "time"

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

// Started waits until n layers of p have been taken by its decoders (or p is dead) and
// returns the layers in the order their decoding started.
func Started(p *Pipeline, n int) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.order) < n && !p.dead {
		p.cond.Wait()
	}
	return append([]int(nil), p.order...)
}

// Settled waits until n layers of p have been taken by its decoders and none of them is
// busy (each waits for the reader or has finished), or p is dead, and returns the bytes
// that layers taken out of order hold in memory. A decoder starting to wait does not
// signal p.cond, so it polls.
func Settled(p *Pipeline, n int) (farMem int64) {
	for {
		p.mu.Lock()
		if len(p.order) >= n && p.busy == 0 || p.dead {
			defer p.mu.Unlock()
			return p.farMem
		}
		p.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}
