/*
 * Test helper for the Windows suite (never shipped): adds a PEM certificate
 * to, or removes it from, the local machine's trusted root store ("ROOT"), so
 * that a test can make a private CA trusted through the Windows certificate
 * store alone (not through ca_cert_pem).
 *
 * usage: trust_ca.exe add|remove <ca.pem>     exit 0 on success
 */
#include <windows.h>
#include <wincrypt.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    static char pem[65536];
    static BYTE der[65536];
    DWORD der_len = sizeof der;
    FILE *f;
    size_t n;
    HCERTSTORE store;
    const CERT_CONTEXT *cert, *found;
    int add;

    if (argc != 3 || (strcmp(argv[1], "add") != 0 && strcmp(argv[1], "remove") != 0)) {
        fputs("usage: trust_ca.exe add|remove <ca.pem>\n", stderr);
        return 2;
    }
    add = strcmp(argv[1], "add") == 0;
    f = fopen(argv[2], "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", argv[2]);
        return 1;
    }
    n = fread(pem, 1, sizeof pem - 1, f);
    fclose(f);
    pem[n] = '\0';
    if (!CryptStringToBinaryA(pem, 0, CRYPT_STRING_BASE64HEADER, der, &der_len, NULL, NULL)) {
        fprintf(stderr, "not a PEM certificate (error %lu)\n", GetLastError());
        return 1;
    }
    store = CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, 0, CERT_SYSTEM_STORE_LOCAL_MACHINE, L"ROOT");
    if (!store) {
        fprintf(stderr, "cannot open the ROOT store (error %lu)\n", GetLastError());
        return 1;
    }
    cert = CertCreateCertificateContext(X509_ASN_ENCODING | PKCS_7_ASN_ENCODING, der, der_len);
    if (!cert) {
        fprintf(stderr, "not a certificate (error %lu)\n", GetLastError());
        return 1;
    }
    if (add) {
        if (!CertAddCertificateContextToStore(store, cert, CERT_STORE_ADD_REPLACE_EXISTING, NULL)) {
            fprintf(stderr, "cannot add to ROOT (error %lu)\n", GetLastError());
            return 1;
        }
    } else {
        found = CertFindCertificateInStore(store, X509_ASN_ENCODING | PKCS_7_ASN_ENCODING, 0, CERT_FIND_EXISTING, cert, NULL);
        if (found && !CertDeleteCertificateFromStore(found)) {
            fprintf(stderr, "cannot remove from ROOT (error %lu)\n", GetLastError());
            return 1;
        }
    }
    CertFreeCertificateContext(cert);
    CertCloseStore(store, 0);
    puts(add ? "added" : "removed");
    return 0;
}
