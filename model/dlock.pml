/*
 * dlock.pml - Promela model of the dlock lock-directory protocol.
 *
 * The lock directory PATH holds exactly one state entry whose NAME is the
 * state:   free.E          unlocked, E = epoch (fence of the last holder)
 *          free.E.q        the same, handed to the waiters' queue (a holder
 *                          that saw tickets released to it; who may take
 *                          it is the queue's rule, not modelled: any may)
 *          held.E.T.S      held by acquisition token T, heartbeat seq S
 * Every transition is a rename that succeeds only if its exact source name
 * still exists (a compare-and-swap done by the filesystem), and every
 * rename target is a name never used before.
 *
 * Mapping of model steps to the Go code (model/README.md has the table):
 *   look()      listing PATH to learn the entry name     lockdir.Read (internal/lockdir), through readState (attempt.go)
 *   acquire     free.E[.q] -> held.(E+1).T.0              Lock.take of a free entry (attempt.go), a lockdir.Move
 *   heartbeat   held.E.T.S -> held.E.T.(S+1)              Lock.refresh (attempt.go), from heartbeat (deadline.go); fails => Lost closes
 *   release     held.E.T.S -> free.E or free.E.q          Lock.release (deadline.go), from Lock.Unlock (lock.go); fails => ErrLost
 *   reclaim     held.E.T.S -> held.(E+1).T'.0             Lock.take of a stale entry (attempt.go), when actOn judges it stale
 *   crash       the process stops forever (SIGKILL, power loss)
 * (acquire and reclaim are one take(e, token, reclaim) in the Go code;
 * the renames are the same.)
 *
 * Abstractions:
 *  - Staleness is nondeterministic: any waiter may judge any held entry
 *    stale at any time (over-approximates every TIMEOUT / dead-pid rule,
 *    clock skew and attribute caching). A pause is simply not being
 *    scheduled, for as long as the search likes.
 *  - A waiter's judgement may be arbitrarily old: look() and the rename that
 *    acts on it are separate steps, with any interleaving in between.
 *  - Creation of PATH (staging dir renamed into place) is not modelled: the
 *    model starts with PATH holding free.0. Neither are an empty PATH, the
 *    owner record, timestamps or ambiguous network-filesystem errors.
 *  - Tokens T are fresh per acquisition (a counter, standing for 128 random
 *    bits). Bounded: at most MAXACQ successful acquisitions/reclaims in all
 *    (so epochs stay <= MAXACQ) and at most MAXHB heartbeats per hold.
 *  - Each step below is one atomic statement: the rename plus the process's
 *    own bookkeeping of its result (in Go, process memory dies with the
 *    process, so a crash between rename and bookkeeping is the same as a
 *    crash after it: the entry stays, its holder is gone).
 *
 * Properties (asserts; checked in every reachable state, see check_inv):
 *  (a) at most one process believes it holds the CURRENT entry, and a held
 *      entry always has exactly one believer (a free one none); a process
 *      whose entry is no longer current never completes a heartbeat or a
 *      release (a late release never frees a successor's lock);
 *  (b) loss is always detected: the next heartbeat or release after being
 *      reclaimed fails, and a failure happens only after a real reclaim
 *      (no false loss); also as LTL claim `lossdetect` (weak until);
 *  (c) fences strictly rise across successful acquisitions/reclaims;
 *  (d) an acquire or reclaim succeeds only if the entry is unchanged since
 *      the look() it acts on (no ABA: an old judgement can never take a
 *      newer entry).
 *
 * Variants (for check.sh, expected to FAIL):
 *  -DBROKEN     the peers' scheme: reclaim = delete PATH's entry by path,
 *               then create a new one; heartbeat = touch by path; release =
 *               remove by path. Double reclaim and late release go through.
 *  -DHB_TOUCH   heartbeat only refreshes the entry's mtime (Chtimes) and
 *               keeps its name: breaks (d) - a live holder that heartbeat
 *               after a waiter's look() is still reclaimed by it.
 *  -DAMBIG      a rename that took effect may report an error (lost reply on
 *               a network filesystem); the caller then checks whether the
 *               target exists, in a later step (lockdir.Move,
 *               invariant 5). (a) (c) (d) and loss detection still hold, but
 *               a release can be reported as ErrLost although it happened
 *               (a waiter took free.E before the check): a false loss.
 *               -DAMBIG -DNO_FL (that assert off) must pass.
 */

#ifndef N
#define N 3            /* processes */
#endif
#ifndef MAXACQ
#define MAXACQ 4       /* successful acquisitions + reclaims, in all */
#endif
#ifndef MAXHB
#define MAXHB 2        /* heartbeats per hold */
#endif

/* -DNO_D drops the asserts of (d), -DNO_AB those of (a) and (b), so that
 * a search of a broken variant shows the next property it breaks. */
#ifdef NO_D
#define ASSERT_D skip
#else
#define ASSERT_D assert(gen == ogen)          /* (d) */
#endif
#ifdef NO_AB
#define ASSERT_AB(e) skip
#else
#define ASSERT_AB(e) assert(e)
#endif
/* -DNO_FL drops the one assert that -DAMBIG breaks (a false ErrLost) */
#ifdef NO_FL
#define ASSERT_FL(e) skip
#else
#define ASSERT_FL(e) assert(e)
#endif
/* -DAMBIG: a rename that took effect may still report an error (a lost
 * reply on a network filesystem); the caller then looks whether the target
 * exists (lockdir.Move, invariant 5) in a separate, later step. */
#ifdef AMBIG
#define MAYBE_AMBIG(k) if :: skip :: pend = k fi
#else
#define MAYBE_AMBIG(k) skip
#endif

#define FREE 0
#define HELD 1
#define NONE 255

/* The one state entry in PATH. present=0 only in the BROKEN variant,
 * between its delete and its create. */
bit  present = 1;
bit  ekind = FREE;
byte eE = 0;           /* epoch */
byte eT = 0;           /* token (0 for free entries) */
bit  eQ = 0;           /* a free entry handed to the queue: free.E.q */
byte eS = 0;           /* heartbeat sequence */

/* Each process's belief: holding with (bE,bT,bS) or not. */
bool holding[N];
byte bE[N], bT[N], bS[N];

/* Ghost state, for the properties only (not visible to the protocol). */
byte owner = NONE;     /* process whose acquisition made the current held entry */
bool ousted[N];        /* its held entry was taken away (reclaimed / removed) */
bool learned[N];       /* just learned of its loss (set by the failing step) */
byte gen = 0;          /* number of changes of the entry so far */
byte lastfence = 0;    /* fence of the last successful acquisition */
byte nacq = 0;         /* successful acquisitions + reclaims so far */
byte k, ncur_;          /* scratch, always 0 between steps */

#define CUR(p)  (present && ekind == HELD && eE == bE[p] && eT == bT[p] && eS == bS[p])

/* (a): checked at the end of every step that changes anything */
inline check_inv() {
	ncur_ = 0;
	k = 0;
	do
	:: k < N -> if :: holding[k] && CUR(k) -> ncur_++ :: else -> skip fi; k++
	:: else -> break
	od;
	k = 0;
	ASSERT_AB(ncur_ <= 1);                               /* (a) one current holder */
	ASSERT_AB(!(present && ekind == HELD) || ncur_ == 1); /* held => exactly one believer */
	ASSERT_AB(!(present && ekind == FREE) || ncur_ == 0);
	ncur_ = 0
}

/* new fence f granted: (c) */
inline grant(f) {
	assert(f > lastfence);
	lastfence = f;
	nacq++
}

proctype P(byte me)
{
	/* the waiter's last look at PATH: possibly old */
	bool seen = false;
	bit  okind, oQ; byte oE, oT, oS, ogen;
	byte nhb;              /* heartbeats in this hold (the bound) */
	byte pend = 0;         /* AMBIG: 1 = renamed to our held name, 2 = to free.pE, error reported */
	byte pE = 0;
	bit  pQ = 0;           /* AMBIG: the free name released to was free.pE.q */
#ifdef BROKEN
	bool deleted = false;  /* BROKEN reclaim: deleted, create pending */
#define IDLE (!holding[me] && !deleted && pend == 0)
#else
#define IDLE (!holding[me] && pend == 0)
#endif
/* forget a look; zeroed so equal states compare equal */
/* stop holding; zeroed likewise */
#define DROP    holding[me] = false; bE[me] = 0; bT[me] = 0; bS[me] = 0; nhb = 0
#define FORGET  seen = false; okind = 0; oQ = 0; oE = 0; oT = 0; oS = 0; ogen = 0

	do
	/* look(): list PATH (readState). Only needed to act; may be old. */
	:: atomic { IDLE && present ->
		seen = true; okind = ekind; oQ = eQ; oE = eE; oT = eT; oS = eS; ogen = gen;
		learned[me] = false
	   }

	/* acquire (Lock.take in attempt.go; Lock.Lock/TryLock in lock.go):
	 * rename free.E (or free.E.q, the name seen) -> held.(E+1).T.0 */
	:: atomic { IDLE && seen && okind == FREE && nacq < MAXACQ ->
		if
		:: present && ekind == FREE && eE == oE && eQ == oQ ->
			ASSERT_D;
			ekind = HELD; eQ = 0; eE = oE + 1; eT = nacq + 1; eS = 0; gen++;
			holding[me] = true; bE[me] = eE; bT[me] = eT; bS[me] = 0;
			owner = me; ousted[me] = false; nhb = 0;
			grant(eE);
			MAYBE_AMBIG(1)
		:: else -> skip                           /* ENOENT: look again */
		fi;
		FORGET;
		check_inv()
	   }

	/* reclaim (Lock.take in attempt.go; from Lock.Lock/TryLock when the
	 * waiter judged its (old) look stale): held.E.T.S -> held.(E+1).T'.0 */
	:: atomic { IDLE && seen && okind == HELD && nacq < MAXACQ ->
#ifndef BROKEN
		if
		:: present && ekind == HELD && eE == oE && eT == oT && eS == oS ->
			ASSERT_D;
			ousted[owner] = true;
			ekind = HELD; eE = oE + 1; eT = nacq + 1; eS = 0; gen++;
			holding[me] = true; bE[me] = eE; bT[me] = eT; bS[me] = 0;
			owner = me; ousted[me] = false; nhb = 0;
			grant(eE);
			MAYBE_AMBIG(1)
		:: else -> skip                           /* ENOENT: someone moved it */
		fi;
		FORGET;
#else
		/* peers: "it is stale: remove the lock (by path), then create it" */
		if
		:: present && ekind == HELD ->
			ASSERT_D;
			ousted[owner] = true; owner = NONE;
			present = false; gen++;
			deleted = true
		:: else -> FORGET
		fi;
#endif
		check_inv()
	   }
#ifdef BROKEN
	/* second half of the peers' reclaim: mkdir (exclusive) */
	:: atomic { deleted ->
		if
		:: !present ->
			present = true;
			ekind = HELD; eE = oE + 1; eT = nacq + 1; eS = 0; gen++;
			holding[me] = true; bE[me] = eE; bT[me] = eT; bS[me] = 0;
			owner = me; ousted[me] = false; nhb = 0;
			grant(eE)
		:: else -> skip                           /* EEXIST: another won */
		fi;
		deleted = false; FORGET;
		check_inv()
	   }
#endif

	/* heartbeat (Lock.refresh in attempt.go, from heartbeat in deadline.go): held.E.T.S -> held.E.T.(S+1);
	 * failure => the holder learns it lost the lock (Lost closes) */
	:: atomic { holding[me] && pend == 0 && nhb < MAXHB ->
		if
#if defined(BROKEN)
		:: present && ekind == HELD ->            /* touch PATH: any holder's */
#else
		:: CUR(me) ->
#endif
			ASSERT_AB(!ousted[me]);                  /* (a)/(b) */
#ifdef HB_TOUCH
			gen++;                                /* mtime changes, name does not */
#else
			eS = bS[me] + 1; gen++;
#endif
			bS[me] = eS; nhb++;
			MAYBE_AMBIG(1)
		:: else ->
			ASSERT_AB(ousted[me]);                   /* (b) no false loss */
			DROP; learned[me] = true
		fi;
		check_inv()
	   }

	/* release (Lock.release in attempt.go; Lock.Unlock in lock.go):
	 * held.E.T.S -> free.E, or free.E.q when it saw tickets (either, as
	 * the search likes); failure => ErrLost */
	:: atomic { holding[me] && pend == 0 ->
		if
#if defined(BROKEN)
		:: present && ekind == HELD ->            /* remove PATH: any holder's */
			ASSERT_AB(!ousted[me]);                  /* (a): late release */
			ousted[owner] = true;
#else
		:: CUR(me) ->
			ASSERT_AB(!ousted[me]);                  /* (a)/(b) */
#endif
			ekind = FREE; eE = bE[me]; eT = 0; eS = 0; gen++;
			if :: eQ = 0 :: eQ = 1 fi;
			owner = NONE;
#ifdef AMBIG
			if :: skip :: pend = 2; pE = eE; pQ = eQ fi
#else
			skip
#endif
		:: else ->
			ASSERT_AB(ousted[me]);                   /* (b) no false loss */
			learned[me] = true
		fi;
		DROP;
		check_inv()
	   }

#ifdef AMBIG
	/* after an ambiguous error: Lstat the target (lockdir.Move).
	 * Our held name still there: the rename took effect, we hold. Gone:
	 * errGone, i.e. not acquired / lost (it was ours, then reclaimed). */
	:: atomic { pend == 1 ->
		if
		:: CUR(me) -> skip
		:: else ->
			ASSERT_AB(ousted[me]);               /* (b) no false loss */
			DROP; learned[me] = true
		fi;
		pend = 0;
		check_inv()
	   }
	/* release: free.E still there means our release happened; gone means
	 * ErrLost. But a waiter may have acquired free.E -> held.(E+1) in
	 * between: then Unlock reports ErrLost for a release that happened. */
	:: atomic { pend == 2 ->
		if
		:: present && ekind == FREE && eE == pE && eQ == pQ -> skip
		:: else ->
			ASSERT_FL(ousted[me] && pend == 2);  /* (b) no false loss at release */
			learned[me] = true
		fi;
		pend = 0; pE = 0; pQ = 0;
		check_inv()
	   }
#endif

	/* crash: stop forever, at any point between steps; the belief stays
	 * as it was (a dead holder's entry stays until reclaimed) */
	:: break
	od
}

/* (b) as a temporal property: once process p holds a reclaimed entry, it
 * stays so (paused or crashed, possibly forever) until the very step in
 * which it learns of the loss: it never leaves that state by a successful
 * release. Stated for processes 0..2; the processes are symmetric. */
#define ZOMBIE(p) (holding[p] && ousted[p])
ltl lossdetect {
	[] ( (ZOMBIE(0) -> (ZOMBIE(0) W learned[0])) &&
	     (ZOMBIE(1) -> (ZOMBIE(1) W learned[1])) &&
	     (ZOMBIE(2) -> (ZOMBIE(2) W learned[2])) )
}

init {
	atomic {
		k = 0;
		do
		:: k < N -> run P(k); k++
		:: else -> break
		od;
		k = 0
	}
}
