# Run by `cmake --install` (CMakeLists.txt): the pieces whose content or
# place depends on the prefix chosen at install time. FERRY_SOURCE_DIR and
# FERRY_BINARY_DIR are set by the install(CODE) before this script.

# Debian's convention: /usr keeps its configuration in /etc, other
# prefixes in PREFIX/etc.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(FERRY_SYSCONFDIR "/etc")
else()
  set(FERRY_SYSCONFDIR "${CMAKE_INSTALL_PREFIX}/etc")
endif()

# The unit names the installed binary and config file.
set(BINDIR "${CMAKE_INSTALL_PREFIX}/bin")
set(SYSCONFDIR "${FERRY_SYSCONFDIR}")
configure_file("${FERRY_SOURCE_DIR}/contrib/ferry.service.in"
  "${FERRY_BINARY_DIR}/contrib/ferry.service" @ONLY)
# file(INSTALL) puts $DESTDIR in front of an absolute DESTINATION itself.
file(INSTALL "${FERRY_BINARY_DIR}/contrib/ferry.service"
  DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")

# The operator's config survives a reinstall: written only when absent.
set(conf "$ENV{DESTDIR}${FERRY_SYSCONFDIR}/ferry/serve.conf")
if(EXISTS "${conf}")
  message(STATUS "Keeping: ${conf}")
else()
  file(INSTALL "${FERRY_SOURCE_DIR}/contrib/serve.conf" DESTINATION "${FERRY_SYSCONFDIR}/ferry")
endif()
