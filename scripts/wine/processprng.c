/*
 * bcryptprimitives.dll for Wine 8: Go >= 1.22's Windows runtime gets its
 * random bytes from ProcessPrng in bcryptprimitives.dll and stops at once
 * ("fatal error: bcryptprimitives.dll not found") where it is missing, as
 * in Debian 12's Wine 8.0. This DLL exports ProcessPrng over advapi32's
 * SystemFunction036 (RtlGenRandom), which Wine has. It exists only for the
 * Wine lane (scripts/wine.sh); real Windows 10 and later have the DLL.
 * Build: x86_64-w64-mingw32-gcc -shared -o bcryptprimitives.dll processprng.c -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
	while (length > 0) {
		ULONG n = length > 0x10000000 ? 0x10000000 : (ULONG)length;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		length -= n;
	}
	return TRUE;
}
