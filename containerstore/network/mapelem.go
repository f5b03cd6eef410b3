package network

import (
	"errors"
	"fmt"

	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// One element of a map, asked for by its key: NFT_MSG_GETSETELEM without
// NLM_F_DUMP, which github.com/google/nftables (v0.3.0) has no call for.
// Its GetSetElements dumps the whole map, every container's element: a
// start's Filter did that twice, under the logSets lock, so each start
// cost more as the cell filled.
//
// The request (include/uapi/linux/netfilter/nf_tables.h):
//
//	nfgenmsg{family, version, res_id}
//	NFTA_SET_ELEM_LIST_TABLE    string
//	NFTA_SET_ELEM_LIST_SET      string
//	NFTA_SET_ELEM_LIST_ELEMENTS nested
//	  NFTA_LIST_ELEM            nested
//	    NFTA_SET_ELEM_KEY       nested
//	      NFTA_DATA_VALUE       the key's bytes
//
// The kernel answers one NFT_MSG_NEWSETELEM laid out the same way, whose
// element also holds NFTA_SET_ELEM_DATA (for a verdict map: NFTA_DATA_VERDICT
// with NFTA_VERDICT_CODE and NFTA_VERDICT_CHAIN) and NFTA_SET_ELEM_USERDATA
// (libnftnl's TLVs: the comment), or ENOENT when no element has the key.

// mapElem is what a map element holds that Filter compares.
type mapElem struct {
	chain   string // the chain its verdict jumps or goes to
	comment string
}

// getSetElemRequest is the request for the element of key in table's set.
func getSetElemRequest(family byte, table, set string, key []byte) (netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, table)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(unix.NFTA_SET_ELEM_KEY, func(ae *netlink.AttributeEncoder) error {
				ae.Bytes(unix.NFTA_DATA_VALUE, key)
				return nil
			})
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM), Flags: netlink.Request},
		Data:   append([]byte{family, unix.NFNETLINK_V0, 0, 0}, attrs...),
	}, nil
}

// decodeSetElem reads the element of a NFT_MSG_NEWSETELEM answer (data
// after the netlink header). An answer without an element is an error.
func decodeSetElem(data []byte) (mapElem, error) {
	if len(data) < 4 {
		return mapElem{}, errors.New("set element answer: no nfgenmsg")
	}
	var el mapElem
	found := false
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return mapElem{}, err
	}
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(ad *netlink.AttributeDecoder) error {
			for ad.Next() {
				if ad.Type() != unix.NFTA_LIST_ELEM || found {
					continue
				}
				found = true
				ad.Nested(func(ad *netlink.AttributeDecoder) error {
					for ad.Next() {
						switch ad.Type() {
						case unix.NFTA_SET_ELEM_DATA:
							ad.Nested(func(ad *netlink.AttributeDecoder) error {
								for ad.Next() {
									if ad.Type() == unix.NFTA_DATA_VERDICT {
										ad.Nested(func(ad *netlink.AttributeDecoder) error {
											for ad.Next() {
												if ad.Type() == unix.NFTA_VERDICT_CHAIN {
													el.chain = ad.String()
												}
											}
											return nil
										})
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_USERDATA:
							el.comment, _ = userdata.GetString(ad.Bytes(), userdata.NFTNL_UDATA_SET_ELEM_COMMENT)
						}
					}
					return nil
				})
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		return mapElem{}, fmt.Errorf("set element answer: %w", err)
	}
	if !found {
		return mapElem{}, errors.New("set element answer: no element")
	}
	return el, nil
}

// getMapElem asks the kernel for the element of key in the table's map
// name; found is false when it has none.
func (n NFTables) getMapElem(conn *netlink.Conn, name string, key []byte) (el mapElem, found bool, err error) {
	req, err := getSetElemRequest(unix.NFPROTO_IPV4, n.table(), name, key)
	if err != nil {
		return mapElem{}, false, err
	}
	msgs, err := conn.Execute(req)
	switch {
	case errors.Is(err, unix.ENOENT):
		return mapElem{}, false, nil
	case err != nil:
		return mapElem{}, false, fmt.Errorf("get element of map %s: %w", name, err)
	case len(msgs) != 1:
		return mapElem{}, false, fmt.Errorf("get element of map %s: %d answers", name, len(msgs))
	}
	el, err = decodeSetElem(msgs[0].Data)
	if err != nil {
		return mapElem{}, false, fmt.Errorf("map %s: %w", name, err)
	}
	return el, true, nil
}
